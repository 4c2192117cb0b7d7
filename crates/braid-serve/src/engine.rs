//! The model worker: one thread owns the language model (and the text embedder), takes
//! jobs from a queue and runs them; HTTP handlers never touch a model. Chat jobs waiting
//! together with the same generation settings are decoded as one batch (left-padded
//! prompts, one forward pass per step for every row), so concurrent clients share each
//! step's weight reads, as llama.cpp's server shares them between its slots. Each row's
//! text streams back through its own channel as it is decoded. The queue is bounded by
//! permits: a request that finds none is refused at once (the handler answers 503).

use std::collections::VecDeque;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use braid_core::{Error, Result};
use braid_encoders::text::SentenceEncoder;
use braid_llm::generate::{
    generate, generate_embeds, FinishReason, GenerateConfig, Generation, Timing,
};
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
        let (max_queue, max_batch, timeout) = (cfg.max_queue, cfg.max_batch, cfg.timeout);
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
                Worker { chat, embedder, rx, pending: VecDeque::new(), max_batch, timeout }.run()
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
        let job = ChatJob { prompt, inputs, cfg, events, queued: Instant::now(), _permit: permit };
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
    timeout: Duration,
}

impl Worker {
    fn run(mut self) {
        loop {
            if self.pending.is_empty() {
                match self.rx.recv() {
                    Ok(job) => self.pending.push_back(job),
                    Err(_) => return,
                }
            }
            // Everything that arrived meanwhile joins the queue, so it can join a batch.
            while let Ok(job) = self.rx.try_recv() {
                self.pending.push_back(job);
            }
            match self.pending.pop_front() {
                Some(Job::Embed(job)) => self.embed(job),
                Some(Job::Chat(first)) => {
                    let batch = self.batch_with(first);
                    self.chat(batch);
                }
                None => {}
            }
        }
    }

    /// `first` and the waiting chat jobs with the same settings, up to `max_batch`.
    fn batch_with(&mut self, first: ChatJob) -> Vec<ChatJob> {
        let mut batch = vec![first];
        let mut rest = VecDeque::new();
        while let Some(job) = self.pending.pop_front() {
            // Text-only prompts share a batch; a prompt with media runs on its own.
            let joins = |j: &ChatJob| j.inputs.is_empty() && batch[0].inputs.is_empty();
            match job {
                Job::Chat(j)
                    if batch.len() < self.max_batch && j.cfg == batch[0].cfg && joins(&j) =>
                {
                    batch.push(j)
                }
                other => rest.push_back(other),
            }
        }
        self.pending = rest;
        // A client that already left needs no answer; one that waited past its deadline
        // is told so instead of being served late.
        batch.retain(|j| {
            let late = j.queued.elapsed() > self.timeout;
            if late {
                let _ = j.events.send(Event::TimedOut);
            }
            !late && !j.events.is_closed()
        });
        batch
    }

    fn chat(&self, batch: Vec<ChatJob>) {
        let Some(first) = batch.first() else { return };
        let started = Instant::now();
        let mut stream = |row: usize, piece: &str| -> Result<()> {
            if let Some(j) = batch.get(row) {
                // A closed channel is a client gone; the others go on.
                let _ = j.events.send(Event::Piece(piece.to_string()));
            }
            if batch.iter().all(|j| j.events.is_closed()) {
                // Every client of the batch left (disconnected, or timed out): stop.
                return Err(Error::Invalid("every client of the batch left".into()));
            }
            Ok(())
        };
        // A panic inside a kernel fails this batch, not the server: the worker goes on.
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.generate(&batch, &first.cfg, &mut stream)
        }))
        .unwrap_or_else(|_| {
            Err(Error::Invalid("the model failed on this request (a panic)".into()))
        });
        match run {
            Ok((gens, t)) => {
                for (job, g) in batch.iter().zip(gens) {
                    let timings = Timings {
                        queued_s: started.duration_since(job.queued).as_secs_f64(),
                        prompt_s: t.prompt_seconds,
                        decode_s: t.decode_seconds,
                        batch: batch.len(),
                    };
                    let done = Done {
                        completion_tokens: g.tokens.len(),
                        text: g.text,
                        finish: g.finish,
                        prompt_tokens: g.prompt_tokens,
                        timings,
                    };
                    let _ = job.events.send(Event::Done(done));
                }
            }
            Err(e) => {
                for job in &batch {
                    let _ = job.events.send(Event::Failed(e.to_string()));
                }
            }
        }
    }

    /// Text-only prompts as one left-padded batch; a prompt with media (alone) through its
    /// spliced embeddings.
    fn generate(
        &self,
        batch: &[ChatJob],
        cfg: &GenerateConfig,
        stream: &mut dyn FnMut(usize, &str) -> Result<()>,
    ) -> Result<(Vec<Generation>, Timing)> {
        let (llm, tokenizer) = (self.chat.llm()?, self.chat.tokenizer()?);
        let prompts: Vec<Vec<u32>> = batch.iter().map(|j| j.prompt.clone()).collect();
        match batch {
            [one] if !one.inputs.is_empty() => {
                let embeds = self.chat.embed_prompt(&one.prompt, &one.inputs)?;
                generate_embeds(llm, tokenizer, &embeds, None, &prompts, cfg, stream)
            }
            _ => generate(llm, tokenizer, &prompts, cfg, &Device::Cpu, stream),
        }
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

/// Embeds `texts` one batch: rows and the tokens they used.
fn embed_texts(enc: &SentenceEncoder, texts: &[String]) -> Embedded {
    let rows = texts.iter().map(|t| enc.tokenizer().encode(t)).collect::<Result<Vec<_>>>()?;
    let tokens = rows.iter().map(|r| r.ids.len()).sum();
    let emb = enc.embed_encoded(&rows, &Device::Cpu)?;
    Ok((emb.to_vec2::<f32>()?, tokens))
}
