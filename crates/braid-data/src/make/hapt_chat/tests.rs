use super::*;
use crate::conversation::{ConversationDataset, ConversationOptions};
use crate::imu::{Recording, HAPT_CHANNELS, HAPT_CLASSES, UNLABELLED};
use crate::make::question_type;
use braid_core::checkpoint::read_npy;

/// 12 walking, 6 sit-to-stand, 10 standing, 12 unlabelled samples (zero-based classes).
fn labels() -> Vec<i32> {
    let mut l = vec![0; 12];
    l.extend([7; 6]);
    l.extend([4; 10]);
    l.extend([UNLABELLED; 12]);
    l
}

/// Users 1 and 22, one recording each; values count up so windows can be told apart.
fn hapt() -> ImuDataset {
    let rec = |user: u32| Recording {
        name: format!("u{user:02}_r0"),
        values: (0..40 * 6).map(|v| (v + 1000 * user) as f32).collect(),
        labels: labels(),
        subject: Some(user),
    };
    ImuDataset {
        recordings: vec![rec(1), rec(22)],
        channels: HAPT_CHANNELS.iter().map(|s| s.to_string()).collect(),
        classes: HAPT_CLASSES.iter().map(|s| s.to_string()).collect(),
    }
}

fn small(seed: u64) -> HaptChatOptions {
    HaptChatOptions { window: 8, stride: 4, seed, force: false }
}

#[test]
fn facts_take_the_majority_activity_and_a_quarter_transition() {
    let l = labels();
    let facts = |start: usize, majority| WindowFacts::of(&l[start..start + 8], majority);
    let walking = facts(0, Some(0));
    assert_eq!(
        walking.questions(),
        [(QuestionType::Activity, "walking"), (QuestionType::Motion, "moving")]
    );
    // Half walking, half sit-to-stand: the tie goes to walking, the transition is asked.
    let mixed = facts(8, Some(0));
    assert_eq!(mixed.transition, Some(1));
    assert_eq!(mixed.questions().len(), 3);
    // Mostly the transition: no activity describes it.
    let within = facts(12, Some(7));
    assert_eq!(within.questions(), [(QuestionType::Transition, "sit to stand")]);
    assert_eq!(within.caption(), Some("a person standing up from sitting"));
    let standing = facts(20, Some(4));
    assert_eq!(standing.questions()[1], (QuestionType::Motion, "still"));
    assert_eq!(standing.caption(), Some("a person standing"));
    // A transition under a quarter of the window is not asked about.
    assert_eq!(WindowFacts::of(&[7, 4, 4, 4, 4], Some(4)).transition, None);
    assert_eq!(WindowFacts::of(&[UNLABELLED; 4], None).questions(), []);
    for t in [QuestionType::Activity, QuestionType::Motion, QuestionType::Transition] {
        assert!(t.phrasings().len() >= 4 && !t.answers().is_empty());
    }
}

#[test]
fn users_split_and_the_files_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let made = make_hapt_chat(&hapt(), dir.path(), &small(0)).unwrap();
    // Windows at 0, 4, ..., 24 per user (28 and 32 are unlabelled).
    assert_eq!(made.media, 14);
    let open = |name: &str| {
        ConversationDataset::open(dir.path().join(name), &ConversationOptions::default()).unwrap()
    };
    let (train, test, captions, captions_test) = (
        open("train.json"),
        open("test.json"),
        open("captions_train.json"),
        open("captions_test.json"),
    );
    assert!(train.iter().chain(captions.iter()).all(|s| s.id.starts_with("u01_")));
    assert!(test.iter().chain(captions_test.iter()).all(|s| s.id.starts_with("u22_")));
    assert_eq!((captions.len(), captions_test.len()), (7, 7));
    let types: Vec<&str> = test.iter().map(|s| question_type(&s.id)).collect();
    // Six windows with an activity (each also asked `motion`), three with a transition.
    assert_eq!(types.iter().filter(|&&t| t == "activity").count(), 6);
    assert_eq!(types.iter().filter(|&&t| t == "motion").count(), 6);
    assert_eq!(types.iter().filter(|&&t| t == "transition").count(), 3);
    let files = [
        ("train.json", 15),
        ("test.json", 15),
        ("captions_train.json", 7),
        ("captions_test.json", 7),
    ];
    assert_eq!(made.files, files);
    let s = test.iter().find(|s| s.id == "u22_r0_w3_transition").unwrap();
    assert!(s.turns[0].text.starts_with("<imu>\n"), "{}", s.turns[0].text);
    assert_eq!(s.turns[1].text, "sit to stand");
    let window = read_npy(&s.media[0].path).unwrap();
    assert_eq!(window.shape, [8, 6]);
    // Window 3 starts at sample 12: value 22000 + 12 * 6.
    assert!(matches!(&window.data, NpyData::F32(v) if v[0] == 22_000.0 + 72.0));
}

#[test]
fn a_seed_gives_byte_identical_files() {
    let read = |seed: u64| {
        let dir = tempfile::tempdir().unwrap();
        make_hapt_chat(&hapt(), dir.path(), &small(seed)).unwrap();
        ["train.json", "test.json", "captions_train.json", "captions_test.json"]
            .map(|f| std::fs::read(dir.path().join(f)).unwrap())
    };
    assert_eq!(read(5), read(5));
    assert_ne!(read(5), read(6));
}

#[test]
fn bad_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x"), b"x").unwrap();
    let e = make_hapt_chat(&hapt(), dir.path(), &small(0)).unwrap_err().to_string();
    assert!(e.contains("not empty"), "{e}");
    make_hapt_chat(&hapt(), dir.path(), &HaptChatOptions { force: true, ..small(0) }).unwrap();
    let mut one_user = hapt();
    one_user.recordings.truncate(1);
    let empty = tempfile::tempdir().unwrap();
    let e = make_hapt_chat(&one_user, empty.path(), &small(0)).unwrap_err().to_string();
    assert!(e.contains("no samples for test.json"), "{e}");
    let mut odd = hapt();
    odd.recordings[0].name = "../up".into();
    let e = make_hapt_chat(&odd, &empty.path().join("n"), &small(0)).unwrap_err().to_string();
    assert!(e.contains("cannot name a file"), "{e}");
    let mut three = hapt();
    three.channels.truncate(3);
    assert!(make_hapt_chat(&three, &empty.path().join("m"), &small(0)).is_err());
}

#[test]
fn two_fetched_users_give_byte_identical_files() {
    let Some(dir) = crate::imu::fetched_dataset("hapt") else { return };
    let mut hapt = crate::imu::read_hapt(dir.join("hapt.npz")).unwrap();
    hapt.recordings.retain(|r| matches!(r.subject, Some(1 | 22)));
    let read = || {
        let out = tempfile::tempdir().unwrap();
        let made = make_hapt_chat(&hapt, out.path(), &HaptChatOptions::default()).unwrap();
        let files = ["train.json", "test.json", "captions_train.json", "captions_test.json"]
            .map(|f| std::fs::read(out.path().join(f)).unwrap());
        (made.media, made.files, files)
    };
    let first = read();
    assert!(first.0 > 100, "{} windows", first.0);
    assert_eq!(first, read());
}
