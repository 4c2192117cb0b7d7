use std::path::Path;
use std::process::Command;

use image::{Rgb, RgbImage};

use super::*;

/// easy-VQA-like frames: a 64x64 light background with a coloured disc moving right.
pub(crate) fn shape_frames(n: usize) -> Vec<RgbImage> {
    (0..n)
        .map(|t| {
            RgbImage::from_fn(64, 64, |x, y| {
                let (cx, cy) = (12.0 + 4.0 * t as f32, 32.0);
                let inside = (x as f32 - cx).powi(2) + (y as f32 - cy).powi(2) < 100.0;
                if inside {
                    Rgb([200, 40, 40])
                } else {
                    Rgb([235, 235, 220])
                }
            })
        })
        .collect()
}

fn write_pngs(dir: &Path, frames: &[RgbImage]) {
    for (i, f) in frames.iter().enumerate() {
        f.save(dir.join(format!("f{i:03}.png"))).unwrap();
    }
}

/// ffmpeg, or `None` with a note (a failure when BRAID_REQUIRE_ASSETS=1; .ci/run installs it).
pub(crate) fn have_ffmpeg() -> bool {
    let ok = Command::new("ffmpeg").arg("-version").output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("BRAID_REQUIRE_ASSETS").as_deref() != Ok("1"),
            "BRAID_REQUIRE_ASSETS=1 but ffmpeg is missing"
        );
        eprintln!("note: skipping: ffmpeg is not installed");
    }
    ok
}

fn mean_abs_diff(a: &RgbImage, b: &RgbImage) -> f64 {
    let s: u64 = a.as_raw().iter().zip(b.as_raw()).map(|(x, y)| u64::from(x.abs_diff(*y))).sum();
    s as f64 / a.as_raw().len() as f64
}

#[test]
fn a_frame_folder_is_sampled_uniformly() {
    let dir = tempfile::tempdir().unwrap();
    let frames = shape_frames(10);
    write_pngs(dir.path(), &frames);
    let opts =
        VideoOptions { sampling: FrameSampling::Uniform { frames: 4 }, ..Default::default() };
    let v = load_video(dir.path(), &opts).unwrap();
    assert_eq!(v.indices, [1, 3, 6, 8]);
    assert_eq!(v.frames[2], frames[6]);
}

#[test]
fn a_gif_decodes_to_its_frames_and_rate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.gif");
    let frames = shape_frames(5);
    {
        let file = std::fs::File::create(&path).unwrap();
        let mut enc = image::codecs::gif::GifEncoder::new(file);
        let delay = image::Delay::from_numer_denom_ms(100, 1);
        let gif_frames = frames.iter().map(|f| {
            image::Frame::from_parts(
                image::DynamicImage::ImageRgb8(f.clone()).to_rgba8(),
                0,
                0,
                delay,
            )
        });
        enc.encode_frames(gif_frames).unwrap();
    }
    let opts = VideoOptions {
        sampling: FrameSampling::FixedRate { fps: 5.0, max_frames: 8 },
        ..Default::default()
    };
    let v = load_video(&path, &opts).unwrap();
    assert_eq!((v.fps, v.indices.clone()), (Some(10.0), vec![0, 2, 4]));
    assert!(mean_abs_diff(&v.frames[1], &frames[2]) < 1.0);
}

#[test]
fn mp4_and_webm_made_by_ffmpeg_match_the_png_frames() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let frames = shape_frames(8);
    write_pngs(dir.path(), &frames);
    for (ext, codec) in [("mp4", "libx264"), ("webm", "libvpx")] {
        let clip = dir.path().join(format!("clip.{ext}"));
        let st = Command::new("ffmpeg")
            .args(["-y", "-v", "error", "-framerate", "10", "-i"])
            .arg(dir.path().join("f%03d.png"))
            .args(["-c:v", codec, "-pix_fmt", "yuv420p"])
            .arg(&clip)
            .status()
            .unwrap();
        assert!(st.success());
        let opts =
            VideoOptions { sampling: FrameSampling::Uniform { frames: 8 }, ..Default::default() };
        let v = load_video(&clip, &opts).unwrap();
        assert_eq!((v.indices.len(), v.fps), (8, Some(10.0)), "{ext}");
        let mut worst = 0f64;
        for (got, want) in v.frames.iter().zip(&frames) {
            let d = mean_abs_diff(got, want);
            worst = worst.max(d);
            assert!(d < 3.0, "{ext}: mean abs pixel difference {d}");
        }
        eprintln!("{ext}: worst per-frame mean abs pixel difference {worst:.2} / 255");
    }
}
