//! Fuzzing braid-data's decoders (issue 17): WAV through the audio path (decode, mono,
//! resample), IMU CSV and UEA `.ts` through windowing and standardisation statistics, and
//! GIF through video loading, each fed structured mutations of small valid files
//! (braid-core's `tests/fuzz/mutate.rs`). Each must answer `Ok` or `Err` without a panic,
//! and what it accepts must be finite.
#![allow(clippy::unwrap_used, clippy::panic)]

use braid_data::audio::{load_audio, AudioOptions};
use braid_data::imu::{
    read_csv, read_ts, sliding_windows, window_batch, ChannelStats, CsvOptions, ImuDataset,
    WindowConfig,
};
use braid_data::video::{load_video, FrameSampling, VideoOptions};

#[path = "../../braid-core/tests/fuzz/mutate.rs"]
mod mutate;
use mutate::{fuzz_file, Scratch};

/// A WAV: `format` 1 (PCM) or 3 (IEEE float), `data` as is.
fn wav(format: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
    let block = channels * bits / 8;
    let mut out = b"RIFF".to_vec();
    out.extend((36 + data.len() as u32).to_le_bytes());
    out.extend(b"WAVEfmt ");
    out.extend(16u32.to_le_bytes());
    out.extend(format.to_le_bytes());
    out.extend(channels.to_le_bytes());
    out.extend(rate.to_le_bytes());
    out.extend((rate * u32::from(block)).to_le_bytes());
    out.extend(block.to_le_bytes());
    out.extend(bits.to_le_bytes());
    out.extend(b"data");
    out.extend((data.len() as u32).to_le_bytes());
    out.extend(data);
    out
}

#[test]
fn fuzz_wav_decode() {
    let pcm: Vec<u8> = (0..400i16).flat_map(|i| (i * 50).to_le_bytes()).collect();
    let float: Vec<u8> = (0..400).flat_map(|i| (i as f32 / 400.0).to_le_bytes()).collect();
    let seeds = vec![
        wav(1, 1, 16000, 16, &pcm),
        wav(1, 2, 8000, 16, &pcm),
        wav(3, 1, 22050, 32, &float),
        wav(1, 1, 16000, 8, &pcm[..200]),
    ];
    let scratch = Scratch::new("a.wav");
    let opts = AudioOptions { sample_rate: 16000, max_seconds: Some(1.0) };
    fuzz_file("wav", &scratch, &seeds, false, 10000, |path| {
        if let Ok(samples) = load_audio(path, &opts) {
            assert!(samples.iter().all(|s| s.is_finite()), "non-finite samples accepted");
        }
    });
}

/// Windows, a batch and channel statistics of what a reader accepted: all finite.
fn use_dataset(ds: &ImuDataset) {
    let cfg = WindowConfig { length: 2, stride: 1, drop_unlabelled: false };
    let Ok(windows) = sliding_windows(ds, &cfg) else { return };
    if let Ok(x) = window_batch(ds, &windows, 2) {
        let v = x.flatten_all().and_then(|t| t.to_vec1::<f32>()).unwrap();
        assert!(v.iter().all(|s| s.is_finite()), "non-finite IMU values accepted");
    }
    if let Ok(stats) = ChannelStats::fit(&ds.recordings, &ds.channels) {
        assert!(stats.check().is_ok(), "fitted statistics that cannot standardise");
    }
}

#[test]
fn fuzz_imu_csv() {
    let rows: String = (0..8)
        .map(|i| format!("{i},{}.5,-{i}e-1,{},{}\n", i * 2, ["a", "b"][i % 2], i / 4))
        .collect();
    let seeds = vec![
        format!("t,ax,ay,label,subject\n{rows}").into_bytes(),
        b"ax,ay\n1,2\n3,4\n5,6\n".to_vec(),
    ];
    let scratch = Scratch::new("r.csv");
    let opts = CsvOptions {
        label_column: Some("label".into()),
        subject_column: Some("subject".into()),
        ignore: vec!["t".into()],
    };
    fuzz_file("imu csv", &scratch, &seeds, true, 50000, |path| {
        for o in [&opts, &CsvOptions::default()] {
            if let Ok(ds) = read_csv(path, o) {
                use_dataset(&ds);
            }
        }
    });
}

#[test]
fn fuzz_imu_ts() {
    let header = "# comment\n@problemName Toy\n@timeStamps false\n@missing false\n@univariate false\n@dimensions 2\n@equalLength true\n@seriesLength 3\n@classLabel true a b\n@data\n";
    let seeds = vec![
        format!("{header}1,2,3:4,5,6:b\n0.5,0.5,0.5:1,1,1:a\n").into_bytes(),
        format!("{header}(0,1),(1,2),(2,3):(0,4),(1,5),(2,6):a\n").into_bytes(),
    ];
    let scratch = Scratch::new("toy.ts");
    fuzz_file("imu ts", &scratch, &seeds, true, 50000, |path| {
        if let Ok(ds) = read_ts(path) {
            use_dataset(&ds);
        }
    });
}

#[test]
fn fuzz_gif_video() {
    let mut seed = Vec::new();
    {
        let mut enc = image::codecs::gif::GifEncoder::new(&mut seed);
        let delay = image::Delay::from_numer_denom_ms(100, 1);
        let frames = (0..3u8).map(|t| {
            let img = image::RgbaImage::from_fn(6, 4, |x, y| {
                image::Rgba([t * 60, x as u8 * 40, y as u8 * 60, 255])
            });
            image::Frame::from_parts(img, 0, 0, delay)
        });
        enc.encode_frames(frames).unwrap();
    }
    let scratch = Scratch::new("clip.gif");
    let opts =
        VideoOptions { sampling: FrameSampling::Uniform { frames: 4 }, ..Default::default() };
    fuzz_file("gif", &scratch, &[seed], false, 5000, |path| {
        let _ = load_video(path, &opts);
    });
}
