//! Scoring a conversation file with samples decoded together (continuous batching) gives
//! the answers of scoring them one at a time, on a frozen model directory (the tiny Qwen2
//! with an IMU slot) whose prompts differ in length, so later samples join a running batch.
#![allow(clippy::unwrap_used, clippy::panic)]

use braid_core::checkpoint::{npy_bytes, NpyArray, NpyData};
use braid_data::conversation::{ConversationDataset, ConversationOptions};
use braid_pipeline::{evaluate_conversations, Pipeline, PipelineConfig, Weights, PIPELINE_FILE};
use candle_core::Device;

#[test]
fn batched_scoring_gives_the_answers_of_one_at_a_time() {
    let qwen = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/llm/qwen2_chat_tiny")
        .canonicalize()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "llm = {:?}\n[[encoders]]\nmodality = \"imu\"\n[encoders.encoder]\ntype = \"imu_patch\"\nchannels = 6\npatch_size = 4\nstride = 4\ntransformer = {{ hidden_size = 16, intermediate_size = 24, num_layers = 1, num_heads = 2, max_positions = 16 }}\n[encoders.projector]\ntype = \"mlp\"\n[encoders.preprocess]\ntype = \"imu\"\nchannels = [\"a\", \"b\", \"c\", \"d\", \"e\", \"f\"]\nmean = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]\nstd = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]\n",
        qwen.display().to_string()
    );
    let path = dir.path().join(PIPELINE_FILE);
    std::fs::write(&path, text).unwrap();
    let cfg = PipelineConfig::load(&path).unwrap();
    Pipeline::init_seeded(&cfg, dir.path(), &Device::Cpu, 3).unwrap().save(dir.path()).unwrap();
    let model =
        Pipeline::open(dir.path(), Weights::Frozen { dequantize: false }, &Device::Cpu).unwrap();
    // Ten windows, each asked a question of its own length.
    let mut samples = Vec::new();
    for i in 0..10usize {
        let values: Vec<f32> =
            (0..32 * 6).map(|k| ((k * (i + 3)) % 17) as f32 / 8.0 - 1.0).collect();
        let array = NpyArray { shape: vec![32, 6], data: NpyData::F32(values) };
        std::fs::write(dir.path().join(format!("w{i}.npy")), npy_bytes(&array).unwrap()).unwrap();
        let question = format!("what is {}?", "the person doing ".repeat(i % 4 + 1));
        samples.push(
            serde_json::json!({"id": format!("w{i}_activity"), "imu": format!("w{i}.npy"),
            "conversations": [{"from": "human", "value": format!("<imu>\n{question}")},
                              {"from": "gpt", "value": "walking"}]}),
        );
    }
    let file = dir.path().join("test.json");
    std::fs::write(&file, serde_json::to_string(&samples).unwrap()).unwrap();
    let data = ConversationDataset::open(&file, &ConversationOptions::default()).unwrap();
    let one = evaluate_conversations(&model, &data, 0, 1, false).unwrap();
    let together = evaluate_conversations(&model, &data, 0, 4, false).unwrap();
    assert_eq!(together.n, 10);
    let ids = |r: &braid_pipeline::ConversationReport| -> Vec<String> {
        r.answers.iter().map(|a| a.id.clone()).collect()
    };
    assert_eq!(ids(&one), ids(&together), "answers come back in the file's order");
    // A random model's answers run to the token limit, so a row mixed up with another or
    // attending to positions not its own would differ from its first tokens on.
    let same = one.answers.iter().zip(&together.answers).filter(|(a, b)| a.answer == b.answer);
    assert!(same.count() >= 9, "{:?}\n{:?}", one.answers, together.answers);
    assert!(one.answers.iter().all(|a| !a.answer.is_empty()));
}
