//! Chapter 1's library: opening images of every supported kind, refusing bad ones with
//! errors that name the file, tensors, folder scans and the `cxr lesson 1` command.

use std::path::{Path, PathBuf};

use cxr::prelude::*;
use image::{DynamicImage, ImageBuffer, ImageEncoder, Luma, Rgb};

const XRAY: &str = "data/chest_xray/val/NORMAL/NORMAL2-IM-1427-0001.jpeg";

fn gradient_gray16(w: u32, h: u32) -> DynamicImage {
    DynamicImage::ImageLuma16(ImageBuffer::from_fn(w, h, |x, y| {
        Luma([(x * 1000 + y) as u16])
    }))
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    path
}

fn png_bytes(image: &DynamicImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

#[test]
fn opens_gray_16_bit_and_rgb_and_keeps_values() {
    let dir = tempfile::tempdir().unwrap();
    let gray16 = write(dir.path(), "g16.png", &png_bytes(&gradient_gray16(4, 3)));
    let xray = XRay::open(&gray16).unwrap();
    assert_eq!((xray.mode(), xray.size()), (Mode::I16, (4, 3)));
    let t = xray
        .to_tensor(Layout::Hwc, DType::F32, &Device::Cpu)
        .unwrap();
    assert_eq!(t.dims(), &[3, 4, 1]);
    assert_eq!(
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()[..5],
        [0.0, 1000.0, 2000.0, 3000.0, 1.0]
    );
    let lossy = xray
        .to_tensor(Layout::Hwc, DType::U8, &Device::Cpu)
        .unwrap_err();
    assert!(lossy.to_string().contains("g16.png"), "{lossy}");

    let rgb = DynamicImage::ImageRgb8(ImageBuffer::from_fn(5, 2, |x, y| {
        Rgb([x as u8, y as u8, 200])
    }));
    let rgb_path = write(dir.path(), "rgb.png", &png_bytes(&rgb));
    let xray = XRay::open(&rgb_path).unwrap();
    assert_eq!(xray.mode(), Mode::Rgb);
    let hwc = xray
        .to_tensor(Layout::Hwc, DType::U8, &Device::Cpu)
        .unwrap();
    let chw = xray
        .to_tensor(Layout::Chw, DType::U8, &Device::Cpu)
        .unwrap();
    assert_eq!((hwc.dims(), chw.dims()), (&[2, 5, 3][..], &[3, 2, 5][..]));
    // Pixel (x=4, y=1) is [4, 1, 200] in both layouts.
    assert_eq!(
        hwc.get(1).unwrap().get(4).unwrap().to_vec1::<u8>().unwrap(),
        [4, 1, 200]
    );
    let channel = |c: usize| {
        chw.get(c)
            .unwrap()
            .get(1)
            .unwrap()
            .get(4)
            .unwrap()
            .to_scalar::<u8>()
            .unwrap()
    };
    assert_eq!([channel(0), channel(1), channel(2)], [4, 1, 200]);
}

#[test]
fn the_bundled_jpeg_becomes_tensors_of_the_right_shape() {
    let xray = XRay::open(XRAY).unwrap();
    assert_eq!((xray.size(), xray.mode()), ((1776, 1416), Mode::L));
    let small = xray.resize((150, 150)).unwrap();
    let t = small
        .to_tensor(Layout::Chw, DType::F32, &Device::Cpu)
        .unwrap();
    assert_eq!(t.dims(), &[1, 150, 150]);
    let mean = t.mean_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(
        (60.0..200.0).contains(&mean),
        "a radiograph is neither black nor white: {mean}"
    );
    let rgb = small
        .to_rgb()
        .to_tensor(Layout::Hwc, DType::U8, &Device::Cpu)
        .unwrap();
    assert_eq!(rgb.dims(), &[150, 150, 3]);
    assert_eq!(small.halve().unwrap().size(), (75, 75));
    assert!(matches!(xray.resize((0, 10)), Err(Error::BadSize { .. })));
}

#[test]
fn resize_keeps_16_bit_values_and_refuses_modes_an_xray_never_has() {
    // A flat image stays flat under every filter, whatever the bytes' order in the buffer.
    let flat16 = DynamicImage::ImageLuma16(ImageBuffer::from_pixel(40, 30, Luma([51_234u16])));
    let rgb16 = DynamicImage::ImageRgb16(ImageBuffer::from_pixel(
        40,
        30,
        Rgb([700u16, 30_000, 65_535]),
    ));
    for filter in Filter::ALL {
        let small = cxr::imaging::resize(&flat16, (13, 7), filter).unwrap();
        assert!(
            small.as_luma16().unwrap().pixels().all(|p| p.0 == [51_234]),
            "{filter:?}"
        );
        let small = cxr::imaging::resize(&rgb16, (13, 7), filter).unwrap();
        assert!(
            small
                .as_rgb16()
                .unwrap()
                .pixels()
                .all(|p| p.0 == [700, 30_000, 65_535]),
            "{filter:?}"
        );
    }
    let gray16 = XRay::from_image("g16.png", gradient_gray16(40, 30)).unwrap();
    assert_eq!(gray16.resize((20, 15)).unwrap().mode(), Mode::I16);

    let with_alpha = DynamicImage::ImageLumaA8(ImageBuffer::new(8, 8));
    let refused = cxr::imaging::resize(&with_alpha, (4, 4), Filter::Bicubic).unwrap_err();
    assert!(matches!(refused, Error::Resize(_)), "{refused:?}");
    assert!(
        refused.to_string().contains("XRay::from_image"),
        "{refused}"
    );
    // The X-ray itself drops the alpha channel and resizes.
    let xray = XRay::from_image("la.png", with_alpha).unwrap();
    assert_eq!(xray.resize((4, 4)).unwrap().size(), (4, 4));
}

#[test]
fn exif_orientation_is_ignored_as_pillow_does() {
    // A 6x2 JPEG whose EXIF says "rotate 90 degrees": Pillow's Image.open keeps it 6x2.
    let dir = tempfile::tempdir().unwrap();
    let image = DynamicImage::ImageLuma8(ImageBuffer::from_fn(6, 2, |x, _| Luma([x as u8 * 40])));
    let mut bytes = Vec::new();
    let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 95);
    let exif = [
        b"II*\0".as_slice(),
        &8u32.to_le_bytes(),
        &1u16.to_le_bytes(),
        &0x0112u16.to_le_bytes(),
        &3u16.to_le_bytes(),
        &1u32.to_le_bytes(),
        &6u16.to_le_bytes(),
        &[0, 0],
        &0u32.to_le_bytes(),
    ]
    .concat();
    encoder.set_exif_metadata(exif).unwrap();
    encoder
        .write_image(image.as_bytes(), 6, 2, image::ExtendedColorType::L8)
        .unwrap();
    let path = write(dir.path(), "rotated.jpeg", &bytes);
    assert_eq!(XRay::open(&path).unwrap().size(), (6, 2));
}

#[test]
fn bad_files_get_typed_errors_that_name_them() {
    let dir = tempfile::tempdir().unwrap();
    let jpeg = std::fs::read(XRAY).unwrap();

    let missing = dir.path().join("missing.jpeg");
    let err = XRay::open(&missing).unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");

    let text = write(dir.path(), "notes.jpeg", b"these are not pixels");
    let err = XRay::open(&text).unwrap_err();
    assert!(matches!(err, Error::NotAnImage { .. }), "{err:?}");

    let truncated = write(dir.path(), "truncated.jpeg", &jpeg[..jpeg.len() / 2]);
    let err = XRay::open(&truncated).unwrap_err();
    assert!(matches!(err, Error::CorruptImage { .. }), "{err:?}");

    let mut damaged = jpeg.clone();
    // Keep the JPEG signature (FF D8 FF), wipe the headers after it.
    damaged[3..200].fill(0x00);
    let damaged = write(dir.path(), "damaged.jpeg", &damaged);
    let err = XRay::open(&damaged).unwrap_err();
    assert!(
        matches!(err, Error::CorruptImage { .. } | Error::EmptyImage { .. }),
        "{err:?}"
    );

    let folder = dir.path().join("a-folder.png");
    std::fs::create_dir(&folder).unwrap();
    assert!(matches!(
        XRay::open(&folder).unwrap_err(),
        Error::NotAnImage { .. }
    ));

    for (path, err) in [
        (&missing, XRay::open(&missing).unwrap_err()),
        (&text, XRay::open(&text).unwrap_err()),
        (&truncated, XRay::open(&truncated).unwrap_err()),
        (&damaged, XRay::open(&damaged).unwrap_err()),
    ] {
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }
}

/// A PNG whose header claims `width` x `height` (the CRC fixed up so only the size is odd).
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = png_bytes(&DynamicImage::ImageLuma8(ImageBuffer::new(1, 1)));
    bytes[16..20].copy_from_slice(&width.to_be_bytes());
    bytes[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32fast::hash(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    bytes
}

#[test]
fn decompression_bombs_and_empty_images_are_refused_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    let bomb = write(dir.path(), "bomb.png", &png_claiming(40_000, 40_000));
    match XRay::open(&bomb).unwrap_err() {
        Error::TooLarge { pixels, limit, .. } => {
            assert_eq!((pixels, limit), (1_600_000_000, 178_956_970));
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let strict = LoadOptions { max_pixels: 1_000 };
    assert!(matches!(
        XRay::open_with(XRAY, strict),
        Err(Error::TooLarge { .. })
    ));

    let empty = write(dir.path(), "empty.png", &png_claiming(0, 10));
    let err = XRay::open(&empty).unwrap_err();
    assert!(
        matches!(err, Error::EmptyImage { .. } | Error::CorruptImage { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("empty.png"));
}

#[test]
fn a_folder_scan_labels_by_folder_and_reports_unreadable_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("chest_xray");
    let jpeg = std::fs::read(XRAY).unwrap();
    write(&root, "train/NORMAL/IM-0001-0001.jpeg", &jpeg);
    write(&root, "train/pneumonia/person7_virus_12.jpeg", &jpeg);
    write(
        &root,
        "test/Opacity/scan.png",
        &png_bytes(&gradient_gray16(8, 6)),
    );
    write(&root, "train/NORMAL/.DS_Store", b"finder noise");
    write(&root, "train/NORMAL/readme.txt", b"not an image name");

    let scan = scan_folder(&root, ScanOptions::default()).unwrap();
    let frame = &scan.frame;
    assert_eq!(frame.height(), 3);
    let col = |name: &str| -> Vec<Option<String>> {
        frame
            .column(name)
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .map(|v| v.map(str::to_owned))
            .collect()
    };
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        col("file"),
        [
            s("test/Opacity/scan.png"),
            s("train/NORMAL/IM-0001-0001.jpeg"),
            s("train/pneumonia/person7_virus_12.jpeg")
        ]
    );
    assert_eq!(col("label"), [s("PNEUMONIA"), s("NORMAL"), s("PNEUMONIA")]);
    assert_eq!(col("split"), [s("test"), s("train"), s("train")]);
    assert_eq!(col("patient_id"), [None, s("0001"), s("7")]);
    let widths: Vec<Option<u32>> = frame
        .column("width")
        .unwrap()
        .u32()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(widths, [Some(8), Some(1776), Some(1776)]);

    write(&root, "train/NORMAL/broken.jpeg", &jpeg[..1000]);
    let err = scan_folder(&root, ScanOptions::default()).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, Error::UnreadableFiles { count: 1, .. }),
        "{err:?}"
    );
    assert!(
        message.contains("broken.jpeg") && message.contains("skip_unreadable"),
        "{message}"
    );
    let lenient = ScanOptions {
        skip_unreadable: true,
        ..Default::default()
    };
    let scan = scan_folder(&root, lenient).unwrap();
    assert_eq!((scan.frame.height(), scan.skipped.len()), (3, 1));

    write(&root, "train/covid/person9_virus_1.jpeg", &jpeg);
    let err = scan_folder(&root, lenient).unwrap();
    assert_eq!(
        err.skipped.len(),
        2,
        "an unknown class folder is reported like a bad file"
    );
    let strict = scan_folder(&root, ScanOptions::default())
        .unwrap_err()
        .to_string();
    assert!(strict.contains("2 file(s)"), "{strict}");

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(matches!(
        scan_folder(&empty, ScanOptions::default()),
        Err(Error::EmptyFolder { .. })
    ));
    assert!(matches!(
        scan_folder(dir.path().join("nope"), ScanOptions::default()),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn the_bundled_csv_lists_exactly_the_bundled_folder() {
    let scan = scan_folder(cxr::ch01_loading::IMG_PATH, ScanOptions::default()).unwrap();
    let listed = read_csv(cxr::ch01_loading::CSV_PATH).unwrap();
    let expected = scan.frame.select(["file", "label"]).unwrap();
    let listed_files = listed.select(["file", "label"]).unwrap();
    assert!(
        expected.equals(&listed_files),
        "regenerate with `cargo run -- scan data/chest_xray/val --csv data/chest_xray/val.csv`"
    );
    let counts = |label: &str| {
        scan.frame
            .column("label")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .filter(|l| *l == Some(label))
            .count()
    };
    assert_eq!((counts("NORMAL"), counts("PNEUMONIA")), (8, 8));
}

#[test]
fn cxr_lesson_1_writes_its_figure_and_unknown_lessons_say_what_exists() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cxr"))
        .args(["lesson", "1", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("NORMAL/NORMAL2-IM-1427-0001.jpeg: (1776, 1416) -> (150, 150)"),
        "{stdout}"
    );
    let figure = image::open(dir.path().join("ch01-resize.png")).unwrap();
    assert!(figure.width() > 700 && figure.height() > 400);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cxr"))
        .args(["lesson", "12"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("no lesson 12") && stderr.contains("1 (loading"),
        "{stderr}"
    );
}

#[test]
fn flips_mirror_and_turn_the_pixels_as_opencv_does() {
    // A 3 x 2 gray image: cv2.flip(img, 1) swaps columns, cv2.flip(img, 0) rows.
    let image = image::GrayImage::from_raw(3, 2, vec![1, 2, 3, 4, 5, 6]).unwrap();
    let xray = XRay::from_image("grid.png", DynamicImage::ImageLuma8(image)).unwrap();
    assert_eq!(xray.fliplr().image().as_bytes(), &[3, 2, 1, 6, 5, 4]);
    assert_eq!(xray.flipud().image().as_bytes(), &[4, 5, 6, 1, 2, 3]);
    assert_eq!(
        xray.fliplr().fliplr().image().as_bytes(),
        xray.image().as_bytes()
    );
    assert_eq!(xray.fliplr().path(), xray.path());
}
