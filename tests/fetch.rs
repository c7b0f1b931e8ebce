//! `cxr fetch` end to end against a real HTTP server on 127.0.0.1 that the test starts:
//! a download, a transfer cut off and resumed with a Range request, a damaged file and a
//! changed file rejected, a second run that finds everything in place.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cxr::fetch::{CHECKSUMS, FetchOptions, fetch_file, fetch_tutorial, unpack_to_folders};

/// What the server serves and how it misbehaves.
#[derive(Default)]
struct State {
    files: HashMap<String, Vec<u8>>,
    /// Cut the next response's body off after this many bytes.
    cut_next: Option<usize>,
    /// `(path, range header)` of every request.
    log: Vec<(String, Option<String>)>,
    /// Accept the next request and never answer it (for 10 s).
    stall_next_answer: bool,
    /// Send this many bytes of the next body, then fall silent (for 10 s).
    stall_next_after: Option<usize>,
    /// Send every body in pieces of this many bytes, one every 100 ms.
    trickle: Option<usize>,
}

struct Server {
    base: String,
    state: Arc<Mutex<State>>,
}

impl Server {
    /// Serves until 200 connections or 120 seconds, whichever comes first.
    fn start(files: HashMap<String, Vec<u8>>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}/data", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            files,
            ..Default::default()
        }));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut served = 0;
            while served < 200 && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => {
                        served += 1;
                        let _ = handle(stream, &shared);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Server { base, state }
    }

    fn log(&self) -> Vec<(String, Option<String>)> {
        self.state.lock().unwrap().log.clone()
    }
}

fn handle(mut stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut request = Vec::new();
    let mut byte = [0u8; 1];
    while !request.ends_with(b"\r\n\r\n") && request.len() < 16_384 {
        if stream.read(&mut byte)? == 0 {
            return Ok(());
        }
        request.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&request).into_owned();
    let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
    let range = text
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("range:"))
        .map(|l| l[6..].trim().to_string());
    let (body, cut, stall_answer, stall_after, trickle) = {
        let mut s = state.lock().unwrap();
        s.log.push((path.clone(), range.clone()));
        let name = path.trim_start_matches("/data/").to_string();
        (
            s.files.get(&name).cloned(),
            s.cut_next.take(),
            std::mem::take(&mut s.stall_next_answer),
            s.stall_next_after.take(),
            s.trickle,
        )
    };
    // A stalled connection is held open on a thread of its own, so that the server
    // goes on answering the requests that follow.
    let hold = |stream: TcpStream| {
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(10));
            drop(stream);
        });
    };
    if stall_answer {
        hold(stream);
        return Ok(());
    }
    let Some(body) = body else {
        stream.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?;
        return Ok(());
    };
    let start: usize = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.trim_end_matches('-').parse().ok())
        .unwrap_or(0);
    if start >= body.len() && start > 0 {
        stream.write_all(
            b"HTTP/1.1 416 Range Not Satisfiable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?;
        return Ok(());
    }
    let head = if range.is_some() {
        format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\nConnection: close\r\n\r\n",
            body.len() - start,
            body.len() - 1,
            body.len()
        )
    } else {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
    };
    stream.write_all(head.as_bytes())?;
    let rest = &body[start..];
    let sent = cut.map_or(rest.len(), |c| c.min(rest.len()));
    if let Some(after) = stall_after {
        stream.write_all(&rest[..after.min(sent)])?;
        stream.flush()?;
        hold(stream);
        return Ok(());
    }
    for piece in rest[..sent].chunks(trickle.unwrap_or(sent.max(1))) {
        stream.write_all(piece)?;
        stream.flush()?;
        if trickle.is_some() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    Ok(())
}

/// The bundled X-rays as the tutorial's files: train from all 16, test from the first 6.
fn tutorial_files() -> HashMap<String, Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    cxr::data::write_folder(Path::new("data/chest_xray/val"), &dir.path().join("train")).unwrap();
    let small = dir.path().join("small");
    for name in [
        "NORMAL/NORMAL2-IM-1427-0001.jpeg",
        "NORMAL/NORMAL2-IM-1430-0001.jpeg",
        "PNEUMONIA/person1946_bacteria_4874.jpeg",
    ] {
        let to = small.join(name);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(Path::new("data/chest_xray/val").join(name), to).unwrap();
    }
    cxr::data::write_folder(&small, &dir.path().join("test")).unwrap();
    cxr::fetch::TUTORIAL_FILES
        .iter()
        .map(|name| {
            (
                name.to_string(),
                std::fs::read(dir.path().join(name)).unwrap(),
            )
        })
        .collect()
}

fn options(server: &Server) -> FetchOptions {
    FetchOptions::from(server.base.clone())
}

/// No progress bar, and timeouts of a second so that a stall shows in a test.
fn quiet() -> FetchOptions {
    FetchOptions {
        answer_timeout: Duration::from_secs(1),
        silence_timeout: Duration::from_secs(1),
        ..FetchOptions::from("")
    }
}

#[test]
fn fetches_verifies_and_then_finds_everything_in_place() {
    let files = tutorial_files();
    let server = Server::start(files.clone());
    let to = tempfile::tempdir().unwrap();
    let fetched = fetch_tutorial(to.path(), &options(&server)).unwrap();
    assert_eq!(fetched.len(), 4);
    for f in &fetched {
        assert!(!f.already_there);
        let name = f
            .path
            .strip_prefix(to.path())
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        assert_eq!(std::fs::read(&f.path).unwrap(), files[&name], "{name}");
    }
    let sums = std::fs::read_to_string(to.path().join(CHECKSUMS)).unwrap();
    assert_eq!(sums.lines().count(), 4);
    let requests = server.log().len();
    let again = fetch_tutorial(to.path(), &options(&server)).unwrap();
    assert!(again.iter().all(|f| f.already_there));
    assert_eq!(
        server.log().len(),
        requests,
        "nothing downloaded the second time"
    );

    // The folder layout, unpacked from the fetched files, holds the original JPEGs.
    let folders = tempfile::tempdir().unwrap();
    let n = unpack_to_folders(
        &to.path().join("train/images.tfrec"),
        &to.path().join("train/paths.tfrec"),
        &folders.path().join("train"),
    )
    .unwrap();
    assert_eq!(n, 16);
    let original =
        std::fs::read("data/chest_xray/val/PNEUMONIA/person1946_bacteria_4874.jpeg").unwrap();
    let unpacked = std::fs::read(
        folders
            .path()
            .join("train/PNEUMONIA/person1946_bacteria_4874.jpeg"),
    )
    .unwrap();
    assert_eq!(unpacked, original);
}

#[test]
fn an_interrupted_transfer_resumes_where_it_stopped() {
    let files = tutorial_files();
    let total = files["train/images.tfrec"].len();
    let server = Server::start(files.clone());
    server.state.lock().unwrap().cut_next = Some(100_000);
    let to = tempfile::tempdir().unwrap();
    let url = format!("{}/train/images.tfrec", server.base);
    let error = fetch_file(&url, to.path(), "train/images.tfrec", &quiet())
        .unwrap_err()
        .to_string();
    assert!(error.contains("broke off after 100000 bytes"), "{error}");
    assert!(error.contains("run the same command again"), "{error}");
    let part = to.path().join("train/images.tfrec.part");
    assert_eq!(std::fs::metadata(&part).unwrap().len(), 100_000);
    assert!(!to.path().join("train/images.tfrec").exists());

    let fetched = fetch_file(&url, to.path(), "train/images.tfrec", &quiet()).unwrap();
    assert_eq!(fetched.resumed_from, 100_000);
    assert_eq!(fetched.bytes as usize, total);
    assert_eq!(
        std::fs::read(&fetched.path).unwrap(),
        files["train/images.tfrec"]
    );
    assert!(!part.exists());
    let log = server.log();
    assert_eq!(log.last().unwrap().1.as_deref(), Some("bytes=100000-"));
}

#[test]
fn a_damaged_file_is_rejected_and_deleted() {
    let mut files = tutorial_files();
    let damaged = files.get_mut("test/images.tfrec").unwrap();
    damaged[5000] ^= 0x55;
    let server = Server::start(files);
    let to = tempfile::tempdir().unwrap();
    let url = format!("{}/test/images.tfrec", server.base);
    let error = fetch_file(&url, to.path(), "test/images.tfrec", &quiet())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("damaged") && error.contains("CRC"),
        "{error}"
    );
    assert!(!to.path().join("test/images.tfrec").exists());
    assert!(!to.path().join("test/images.tfrec.part").exists());
}

#[test]
fn a_file_that_changed_since_its_checksum_was_recorded_is_rejected() {
    let files = tutorial_files();
    let server = Server::start(files.clone());
    let to = tempfile::tempdir().unwrap();
    let url = format!("{}/test/paths.tfrec", server.base);
    fetch_file(&url, to.path(), "test/paths.tfrec", &quiet()).unwrap();
    std::fs::remove_file(to.path().join("test/paths.tfrec")).unwrap();
    // Same name, different (but undamaged) content.
    let other = files["train/paths.tfrec"].clone();
    server
        .state
        .lock()
        .unwrap()
        .files
        .insert("test/paths.tfrec".into(), other);
    let error = fetch_file(&url, to.path(), "test/paths.tfrec", &quiet())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("SHA-256") && error.contains("SHA256SUMS"),
        "{error}"
    );
    assert!(!to.path().join("test/paths.tfrec").exists());
}

#[test]
fn a_missing_file_names_the_address() {
    let server = Server::start(HashMap::new());
    let to = tempfile::tempdir().unwrap();
    let url = format!("{}/nothing.tfrec", server.base);
    let error = fetch_file(&url, to.path(), "nothing.tfrec", &quiet())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("HTTP 404") && error.contains("nothing.tfrec"),
        "{error}"
    );
}

/// The error of a fetch that must fail, and fail within 5 s.
fn fails_fast(url: &str, to: &Path, name: &str) -> String {
    let started = Instant::now();
    let error = fetch_file(url, to, name, &quiet()).unwrap_err().to_string();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    error
}

#[test]
fn a_server_that_never_answers_is_given_up_on() {
    let files = tutorial_files();
    let server = Server::start(files);
    server.state.lock().unwrap().stall_next_answer = true;
    let to = tempfile::tempdir().unwrap();
    let url = format!("{}/test/paths.tfrec", server.base);
    let error = fails_fast(&url, to.path(), "test/paths.tfrec");
    assert!(error.contains("no answer within 1 s"), "{error}");
}

#[test]
fn a_body_that_falls_silent_is_given_up_on_and_resumed_later() {
    let files = tutorial_files();
    let server = Server::start(files.clone());
    server.state.lock().unwrap().stall_next_after = Some(50_000);
    let to = tempfile::tempdir().unwrap();
    let url = format!("{}/train/images.tfrec", server.base);
    let error = fails_fast(&url, to.path(), "train/images.tfrec");
    assert!(
        error.contains("stalled after 50000 bytes (no byte for 1 s)"),
        "{error}"
    );
    let fetched = fetch_file(&url, to.path(), "train/images.tfrec", &quiet()).unwrap();
    assert_eq!(fetched.resumed_from, 50_000);
    assert_eq!(
        std::fs::read(&fetched.path).unwrap(),
        files["train/images.tfrec"]
    );
}

#[test]
fn a_slow_but_steady_download_is_never_cut() {
    let files = tutorial_files();
    let size = files["test/paths.tfrec"].len();
    let server = Server::start(files.clone());
    // Pieces every 100 ms: longer in all than the 1 s of silence allowed, never silent.
    server.state.lock().unwrap().trickle = Some(size / 15 + 1);
    let to = tempfile::tempdir().unwrap();
    let url = format!("{}/test/paths.tfrec", server.base);
    let started = Instant::now();
    let fetched = fetch_file(&url, to.path(), "test/paths.tfrec", &quiet()).unwrap();
    assert!(
        started.elapsed() > Duration::from_millis(1400),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        std::fs::read(&fetched.path).unwrap(),
        files["test/paths.tfrec"]
    );
}

#[test]
fn a_cut_file_placed_by_hand_is_not_already_there() {
    let files = tutorial_files();
    let server = Server::start(files.clone());
    let to = tempfile::tempdir().unwrap();
    let placed = to.path().join("train/images.tfrec");
    std::fs::create_dir_all(placed.parent().unwrap()).unwrap();
    let whole = &files["train/images.tfrec"];
    std::fs::write(&placed, &whole[..whole.len() / 2]).unwrap();
    let url = format!("{}/train/images.tfrec", server.base);
    let error = fetch_file(&url, to.path(), "train/images.tfrec", &quiet())
        .unwrap_err()
        .to_string();
    assert!(error.contains("already there but damaged"), "{error}");
    assert!(
        !to.path().join(CHECKSUMS).exists(),
        "a damaged file's hash was recorded"
    );
}

#[test]
fn a_wrong_recorded_checksum_can_be_forgotten() {
    let files = tutorial_files();
    let server = Server::start(files.clone());
    let to = tempfile::tempdir().unwrap();
    std::fs::write(
        to.path().join(CHECKSUMS),
        format!("{}  test/paths.tfrec\n", "0".repeat(64)),
    )
    .unwrap();
    let url = format!("{}/test/paths.tfrec", server.base);
    let error = fetch_file(&url, to.path(), "test/paths.tfrec", &quiet())
        .unwrap_err()
        .to_string();
    assert!(error.contains("--forget-checksums"), "{error}");
    let forget = FetchOptions {
        forget_checksums: true,
        ..quiet()
    };
    let fetched = fetch_file(&url, to.path(), "test/paths.tfrec", &forget).unwrap();
    let sums = std::fs::read_to_string(to.path().join(CHECKSUMS)).unwrap();
    assert!(
        sums.contains(&fetched.sha256) && !sums.contains(&"0".repeat(64)),
        "{sums}"
    );
}
