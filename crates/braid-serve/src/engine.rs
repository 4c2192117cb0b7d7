//! The model worker: one thread owns the language model (and the text embedder), takes
//! jobs from a queue and runs them; HTTP handlers never touch a model. Chat jobs are
//! continuously batched ([`braid_llm::generate::Batcher`]): between two decoding steps,
//! waiting jobs join the running batch after a prefill of their own (media spliced in),
//! finished ones leave, and those whose client left are dropped, so a request never
//! waits for another's answer to end, and concurrent clients share each step's weight
//! reads, as llama.cpp's server slots do. Each row's text streams back through its own
//! channel as it is decoded. The queue is bounded by permits: a request that finds none
//! is refused at once (the handler answers 503).

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use braid_core::{Error, Result};
use braid_encoders::text::SentenceEncoder;
use braid_llm::generate::{Batcher, FinishReason, GenerateConfig, Generation};
use braid_pipeline::Input;
use candle_core::Device;
use tokio::sync::{mpsc as tmpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::model::ChatModel;
use crate::openai::Timings;
use crate::ServeConfig;

/// What a chat or completion job sends back, in order: pieces of text, then one end.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The next piece of the answer.
    Piece(String),
    /// The answer is complete.
    Done(Done),
    /// The job failed.
    Failed(String),
    /// The job waited past its deadline and was not run.
    TimedOut,
}

/// The end of an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Done {
    /// The whole text.
    pub text: String,
    /// Why it ended.
    pub finish: FinishReason,
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Generated tokens.
    pub completion_tokens: usize,
    /// Queue, prompt and decode seconds, and the batch size.
    pub timings: Timings,
}

/// A generation job: prompt token ids, the media its placeholders stand for, settings.
struct ChatJob {
    prompt: Vec<u32>,
    inputs: Vec<Input>,
    /// The prompt's embeddings, once computed (a job waiting to join keeps them).
    embeds: Option<candle_core::Tensor>,
    cfg: GenerateConfig,
    events: tmpsc::UnboundedSender<Event>,
    queued: Instant,
    _permit: OwnedSemaphorePermit,
}

/// Embedding rows and the tokens they used.
pub type Embedded = Result<(Vec<Vec<f32>>, usize)>;

/// An embedding job.
struct EmbedJob {
    texts: Vec<String>,
    reply: oneshot::Sender<Embedded>,
    _permit: OwnedSemaphorePermit,
}

enum Job {
    Chat(ChatJob),
    Embed(EmbedJob),
}

/// The models a server runs, and their ids.
pub struct Models {
    /// The chat model (a language model, or a multimodal model directory).
    pub chat: ChatModel,
    /// Its id in `/v1/models` and requests.
    pub chat_id: String,
    /// A sentence-transformers model for `/v1/embeddings`, with its id.
    pub embedder: Option<(SentenceEncoder, String)>,
}

/// The queue in front of the worker thread.
#[derive(Clone)]
pub struct Engine {
    jobs: mpsc::Sender<Job>,
    permits: Arc<Semaphore>,
    /// The chat model, shared with the worker: handlers build prompts and read media with it.
    pub chat: Arc<ChatModel>,
    chat_id: String,
    embed_id: Option<String>,
}

/// Why a job was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Every queue place is taken.
    Full,
    /// The worker has stopped.
    Stopped,
}

impl Engine {
    /// Starts the worker thread on `models`, with room for `cfg.max_queue` jobs (running
    /// or waiting), batches of at most `cfg.max_batch` rows, and jobs that waited longer
    /// than `cfg.timeout` refused instead of run.
    pub fn start(models: Models, cfg: &ServeConfig) -> Result<Self> {
        let (max_queue, max_batch, timeout, span) =
            (cfg.max_queue, cfg.max_batch, cfg.timeout, cfg.batch_span);
        if max_queue == 0 || max_batch == 0 {
            return Err(Error::config("max_queue", "the queue and batches need room for one job"));
        }
        let (tx, rx) = mpsc::channel::<Job>();
        let chat = Arc::new(models.chat);
        let (embedder, embed_id) = match models.embedder {
            Some((e, id)) => (Some(e), Some(id)),
            None => (None, None),
        };
        let engine = Self {
            jobs: tx,
            permits: Arc::new(Semaphore::new(max_queue)),
            chat: chat.clone(),
            chat_id: models.chat_id,
            embed_id,
        };
        std::thread::Builder::new()
            .name("braid-serve-model".into())
            .spawn(move || {
                let pending = VecDeque::new();
                Worker { chat, embedder, rx, pending, max_batch, span, timeout }.run()
            })
            .map_err(|e| Error::Invalid(format!("cannot start the model thread: {e}")))?;
        Ok(engine)
    }

    /// The chat model's id.
    pub fn chat_id(&self) -> &str {
        &self.chat_id
    }

    /// The embedding model's id, if the server has one.
    pub fn embed_id(&self) -> Option<&str> {
        self.embed_id.as_deref()
    }

    /// Queue places free now.
    pub fn free(&self) -> usize {
        self.permits.available_permits()
    }

    fn permit(&self) -> std::result::Result<OwnedSemaphorePermit, Refused> {
        self.permits.clone().try_acquire_owned().map_err(|_| Refused::Full)
    }

    /// A queue place, or why there is none: take it before preparing a request's media.
    pub fn reserve(&self) -> std::result::Result<OwnedSemaphorePermit, Refused> {
        self.permit()
    }

    /// Queues a generation of `prompt` (its placeholders standing for `inputs`) in the
    /// place `permit` holds; its events arrive on the returned channel.
    pub fn chat(
        &self,
        permit: OwnedSemaphorePermit,
        prompt: Vec<u32>,
        inputs: Vec<Input>,
        cfg: GenerateConfig,
    ) -> std::result::Result<tmpsc::UnboundedReceiver<Event>, Refused> {
        let (events, rx) = tmpsc::unbounded_channel();
        let job = ChatJob {
            prompt,
            inputs,
            embeds: None,
            cfg,
            events,
            queued: Instant::now(),
            _permit: permit,
        };
        self.jobs.send(Job::Chat(job)).map_err(|_| Refused::Stopped)?;
        Ok(rx)
    }

    /// Queues an embedding of `texts`: rows and tokens used.
    pub fn embed(
        &self,
        texts: Vec<String>,
    ) -> std::result::Result<oneshot::Receiver<Embedded>, Refused> {
        let permit = self.permit()?;
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job::Embed(EmbedJob { texts, reply, _permit: permit }))
            .map_err(|_| Refused::Stopped)?;
        Ok(rx)
    }
}

/// The thread that runs the models.
struct Worker {
    chat: Arc<ChatModel>,
    embedder: Option<SentenceEncoder>,
    rx: mpsc::Receiver<Job>,
    pending: VecDeque<Job>,
    max_batch: usize,
    span: usize,
    timeout: Duration,
}

/// A job in the batch.
struct Running {
    job: ChatJob,
    admitted: Instant,
    prompt_s: f64,
    /// Largest batch it was decoded in.
    batch: usize,
}

impl Worker {
    fn run(mut self) {
        let chat = self.chat.clone();
        let (Ok(llm), Ok(tokenizer)) = (chat.llm(), chat.tokenizer()) else { return };
        let mut batcher = Batcher::new(llm, tokenizer, &Device::Cpu, self.span);
        let mut running: HashMap<u64, Running> = HashMap::new();
        let mut next_id = 0u64;
        loop {
            if batcher.is_empty() && self.pending.is_empty() {
                match self.rx.recv() {
                    Ok(job) => self.pending.push_back(job),
                    Err(_) => return,
                }
            }
            while let Ok(job) = self.rx.try_recv() {
                self.pending.push_back(job);
            }
            self.admit(&mut batcher, &mut running, &mut next_id);
            // Clients that left (disconnected, or past their deadline) leave the batch.
            let gone: Vec<u64> = running
                .iter()
                .filter(|(_, r)| r.job.events.is_closed())
                .map(|(id, _)| *id)
                .collect();
            if !gone.is_empty() {
                if batcher.cancel(&gone).is_err() {
                    fail_all(&mut running, "the batch could not drop a departed client");
                    batcher = Batcher::new(llm, tokenizer, &Device::Cpu, self.span);
                }
                gone.iter().for_each(|id| drop(running.remove(id)));
            }
            if batcher.is_empty() {
                continue;
            }
            let size = batcher.len();
            running.values_mut().for_each(|r| r.batch = r.batch.max(size));
            let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                batcher.step(&mut |id, piece| {
                    if let Some(r) = running.get(&id) {
                        // A closed channel is a client gone; it leaves before the next step.
                        let _ = r.job.events.send(Event::Piece(piece.to_string()));
                    }
                    Ok(())
                })
            }));
            match step {
                Ok(Ok(done)) => {
                    for (id, g) in done {
                        if let Some(r) = running.remove(&id) {
                            finish(r, g);
                        }
                    }
                }
                Ok(Err(e)) => {
                    fail_all(&mut running, &e.to_string());
                    batcher = Batcher::new(llm, tokenizer, &Device::Cpu, self.span);
                }
                // A panic inside a kernel fails this batch, not the server.
                Err(_) => {
                    fail_all(&mut running, "the model failed on this batch (a panic)");
                    batcher = Batcher::new(llm, tokenizer, &Device::Cpu, self.span);
                }
            }
        }
    }

    /// Moves waiting jobs into the batch while it has room: embeddings run at once, a chat
    /// job joins after its prefill, or waits (its prompt embedded once) while the batch is
    /// shorter than its prompt.
    fn admit<M: braid_llm::LanguageModel + ?Sized>(
        &mut self,
        batcher: &mut Batcher<'_, M>,
        running: &mut HashMap<u64, Running>,
        next_id: &mut u64,
    ) {
        let mut rest = VecDeque::new();
        while let Some(job) = self.pending.pop_front() {
            let mut j = match job {
                Job::Embed(e) => {
                    self.embed(e);
                    continue;
                }
                Job::Chat(j) => j,
            };
            if j.events.is_closed() {
                continue;
            }
            if j.queued.elapsed() > self.timeout {
                let _ = j.events.send(Event::TimedOut);
                continue;
            }
            if batcher.len() >= self.max_batch {
                rest.push_back(Job::Chat(j));
                continue;
            }
            let embeds = match j.embeds.take() {
                Some(e) => Ok(e),
                None => self.chat.embed_prompt(&j.prompt, &j.inputs),
            };
            let embeds = match embeds.and_then(|e| Ok((e.dim(1)?, e))) {
                Ok(x) => x,
                Err(e) => {
                    let _ = j.events.send(Event::Failed(e.to_string()));
                    continue;
                }
            };
            let (p, embeds) = embeds;
            let max_new = j.cfg.max_new_tokens;
            if !batcher.fits(p, max_new) {
                let msg = format!(
                    "a prompt of {p} positions plus {max_new} new tokens exceeds the {} a request may take (--batch-span, or the model's context)",
                    self.span
                );
                let _ = j.events.send(Event::Failed(msg));
                continue;
            }
            if !batcher.can_join(p, max_new) {
                j.embeds = Some(embeds);
                rest.push_back(Job::Chat(j));
                continue;
            }
            let (id, admitted) = (*next_id, Instant::now());
            *next_id += 1;
            let joined = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                batcher.join(id, &embeds, j.prompt.clone(), &j.cfg)
            }));
            match joined {
                Ok(Ok(())) => {
                    let prompt_s = admitted.elapsed().as_secs_f64();
                    running.insert(id, Running { job: j, admitted, prompt_s, batch: 0 });
                }
                Ok(Err(e)) => {
                    let _ = j.events.send(Event::Failed(e.to_string()));
                }
                Err(_) => {
                    let _ = j
                        .events
                        .send(Event::Failed("the model failed on this prompt (a panic)".into()));
                }
            }
        }
        self.pending = rest;
    }

    fn embed(&self, job: EmbedJob) {
        let out = match &self.embedder {
            Some(enc) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                embed_texts(enc, &job.texts)
            }))
            .unwrap_or_else(|_| Err(Error::Invalid("the embedder failed (a panic)".into()))),
            None => Err(Error::Invalid("this server has no embedding model".into())),
        };
        let _ = job.reply.send(out);
    }
}

/// Sends a finished job its end.
fn finish(r: Running, g: Generation) {
    let timings = Timings {
        queued_s: r.admitted.duration_since(r.job.queued).as_secs_f64(),
        prompt_s: r.prompt_s,
        decode_s: (r.admitted.elapsed().as_secs_f64() - r.prompt_s).max(0.0),
        batch: r.batch,
    };
    let done = Done {
        completion_tokens: g.tokens.len(),
        text: g.text,
        finish: g.finish,
        prompt_tokens: g.prompt_tokens,
        timings,
    };
    let _ = r.job.events.send(Event::Done(done));
}

/// Fails every running job with `msg`.
fn fail_all(running: &mut HashMap<u64, Running>, msg: &str) {
    for (_, r) in running.drain() {
        let _ = r.job.events.send(Event::Failed(msg.to_string()));
    }
}

/// Embeds `texts` one batch: rows and the tokens they used.
fn embed_texts(enc: &SentenceEncoder, texts: &[String]) -> Embedded {
    let rows = texts.iter().map(|t| enc.tokenizer().encode(t)).collect::<Result<Vec<_>>>()?;
    let tokens = rows.iter().map(|r| r.ids.len()).sum();
    let emb = enc.embed_encoded(&rows, &Device::Cpu)?;
    Ok((emb.to_vec2::<f32>()?, tokens))
}
