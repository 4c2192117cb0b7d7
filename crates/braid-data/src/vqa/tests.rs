use super::*;

const ANSWERS: &str = "yes\nno\nred\nblue\ncircle\nrectangle\ntriangle\n";

/// A two-image split: image 0 a red circle (2x2 pixels), image 1 a blue rectangle.
pub(super) fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("answers.txt"), ANSWERS).unwrap();
    let split = dir.path().join("train");
    std::fs::create_dir_all(split.join("images")).unwrap();
    let questions = r#"[["what color is the shape?", "red", 0], ["what shape is in the image?", "circle", 0],
        ["is there not a blue shape?", "no", 1], ["what is the blue shape?", "rectangle", 1],
        ["does the image contain a triangle?", "no", 1]]"#;
    std::fs::write(split.join("questions.json"), questions).unwrap();
    for (id, rgb) in [(0, [255u8, 0, 0]), (1, [0, 0, 255])] {
        let mut img = image::RgbImage::new(2, 2);
        img.put_pixel(1, 0, image::Rgb(rgb));
        img.save(split.join(format!("images/{id}.png"))).unwrap();
    }
    dir
}

#[test]
fn opens_a_split_and_groups_questions_by_image() {
    let dir = fixture();
    let data = EasyVqa::open(dir.path(), Split::Train).unwrap();
    assert_eq!(data.questions().len(), 5);
    assert_eq!(data.answers().len(), 7);
    assert_eq!(data.image_ids(), vec![0, 1]);
    let of1: Vec<_> = data.questions_of(1).iter().map(|q| q.answer.as_str()).collect();
    assert_eq!(of1, ["no", "rectangle", "no"]);
    assert_eq!(data.questions()[3].answer_type(), Some(AnswerType::Shape));
    assert_eq!(data.image_path(1), dir.path().join("train/images/1.png"));
}

#[test]
fn captions_come_from_the_questions() {
    let dir = fixture();
    let data = EasyVqa::open(dir.path(), Split::Train).unwrap();
    assert_eq!(data.image_attributes(0), Some(("red", "circle")));
    assert_eq!(data.caption(1).as_deref(), Some("a blue rectangle"));
    assert_eq!(data.caption(7), None);
    let cov = data.coverage();
    assert_eq!((cov.images, cov.with_both, cov.contradictory), (2, 2, 0));
}

#[test]
fn images_load_as_chw_in_unit_range() {
    let dir = fixture();
    let data = EasyVqa::open(dir.path(), Split::Train).unwrap();
    let t = data.load_image(1, &Device::Cpu).unwrap();
    assert_eq!(t.dims(), &[3, 2, 2]);
    let v: Vec<Vec<Vec<f32>>> = t.to_vec3().unwrap();
    // Pixel (x=1, y=0) is blue; the others black.
    assert_eq!((v[0][0][1], v[1][0][1], v[2][0][1]), (0.0, 0.0, 1.0));
    assert_eq!(v[2][1][1], 0.0);
}

#[test]
fn errors_name_the_file() {
    let dir = fixture();
    let err = EasyVqa::open(dir.path(), Split::Test).unwrap_err().to_string();
    assert!(err.contains("test/questions.json"), "{err}");
    std::fs::write(dir.path().join("train/questions.json"), r#"[["q", "purple", 0]]"#).unwrap();
    let err = EasyVqa::open(dir.path(), Split::Train).unwrap_err().to_string();
    assert!(
        err.contains("questions.json") && err.contains("purple") && err.contains("answers.txt"),
        "{err}"
    );
    std::fs::write(dir.path().join("train/questions.json"), r#"{"q": 1}"#).unwrap();
    let err = EasyVqa::open(dir.path(), Split::Train).unwrap_err().to_string();
    assert!(err.contains("questions.json"), "{err}");
    std::fs::remove_file(dir.path().join("answers.txt")).unwrap();
    let err = EasyVqa::open(dir.path(), Split::Train).unwrap_err().to_string();
    assert!(err.contains("answers.txt"), "{err}");
    assert!("valid".parse::<Split>().is_err());
}

/// The fetched dataset: the counts of the easy-VQA README; no image's questions contradict
/// each other, and the images whose questions give both colour and shape are counted
/// (about 10% of images are only ever asked yes/no questions that do not pin both down).
#[test]
fn real_easy_vqa_counts_and_captions() {
    let Some(dir) = crate::imu::fetched_dataset("easy-vqa") else { return };
    for (split, questions, images, both) in
        [(Split::Train, 38_575, 4_000, 3_578), (Split::Test, 9_673, 1_000, 888)]
    {
        let data = EasyVqa::open(&dir, split).unwrap();
        assert_eq!(data.questions().len(), questions);
        assert_eq!(data.image_ids().len(), images);
        assert_eq!(data.answers().len(), 13);
        let cov = data.coverage();
        eprintln!("{}: {cov:?}", split.as_str());
        assert_eq!(cov.contradictory, 0, "{cov:?}");
        assert_eq!(cov.with_both, both, "{cov:?}");
        let first = data.image_ids()[0];
        assert_eq!(data.load_image(first, &Device::Cpu).unwrap().dims(), &[3, 64, 64]);
    }
}
