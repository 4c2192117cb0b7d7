//! The external programs the dataset makers run (`espeak-ng`, `sox`): each call has a time
//! limit, and a program that is not installed is an error saying how to install it.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use braid_core::{Error, Result};

/// How long one call may run. A clip takes ~20 ms; the limit only catches a hung program.
pub(crate) const CALL_LIMIT: Duration = Duration::from_secs(30);

/// The programs, and how to install them.
pub(crate) const INSTALL: &str = "apt-get install espeak-ng sox";

/// What the spawn error of `program` means to the user.
fn spawn_error(program: &str, e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::NotFound => Error::Invalid(format!(
            "`{program}` not found: making spoken datasets needs espeak-ng and sox ({INSTALL})"
        )),
        _ => Error::io(program, e),
    }
}

fn spawn(program: &str, args: &[&str], stdin: Stdio, stdout: Stdio) -> Result<Child> {
    Command::new(program)
        .args(args)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| spawn_error(program, e))
}

/// Waits for `child` until `deadline`, killing it past that; its stdout (when piped) and
/// the last line of its stderr come back. A failure names the program and its arguments.
fn finish(
    mut child: Child,
    program: &str,
    args: &[&str],
    limit: Duration,
    start: Instant,
) -> Result<Vec<u8>> {
    // Outputs are drained beside the wait: a full pipe would stall the program.
    let out = child.stdout.take().map(|mut o| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = o.read_to_end(&mut buf);
            buf
        })
    });
    let err = child.stderr.take().map(|mut e| {
        std::thread::spawn(move || {
            let mut buf = String::new();
            let _ = e.read_to_string(&mut buf);
            buf
        })
    });
    let call = || format!("`{program} {}`", args.join(" "));
    let mut pause = Duration::from_millis(1);
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| Error::io(program, e))? {
            break status;
        }
        if start.elapsed() >= limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Invalid(format!(
                "{} ran past its limit of {:.1} s and was stopped",
                call(),
                limit.as_secs_f64()
            )));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    };
    let stdout = out.and_then(|h| h.join().ok()).unwrap_or_default();
    let stderr = err.and_then(|h| h.join().ok()).unwrap_or_default();
    if !status.success() {
        let why = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message");
        return Err(Error::Invalid(format!("{} failed ({status}): {}", call(), why.trim())));
    }
    Ok(stdout)
}

/// Runs `program args` to completion within [`CALL_LIMIT`]; returns its stdout.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<Vec<u8>> {
    run_within(program, args, CALL_LIMIT)
}

fn run_within(program: &str, args: &[&str], limit: Duration) -> Result<Vec<u8>> {
    let start = Instant::now();
    let child = spawn(program, args, Stdio::null(), Stdio::piped())?;
    finish(child, program, args, limit, start)
}

/// Runs `first | second` (the first's stdout into the second's stdin), both within
/// [`CALL_LIMIT`]; the second's stdout is discarded.
pub(crate) fn pipe(first: (&str, &[&str]), second: (&str, &[&str])) -> Result<()> {
    let start = Instant::now();
    let mut a = spawn(first.0, first.1, Stdio::null(), Stdio::piped())?;
    let Some(a_out) = a.stdout.take() else {
        return Err(Error::Invalid(format!("`{}` gave no output stream", first.0)));
    };
    let b = match spawn(second.0, second.1, Stdio::from(a_out), Stdio::null()) {
        Ok(b) => b,
        Err(e) => {
            let _ = a.kill();
            let _ = a.wait();
            return Err(e);
        }
    };
    // The second's failure (a bad effect, an unwritable file) explains more.
    let b_done = finish(b, second.0, second.1, CALL_LIMIT, start);
    let a_done = finish(a, first.0, first.1, CALL_LIMIT, start);
    b_done.and(a_done).map(|_| ())
}

/// `path` as an argument: tools take paths as text.
pub(crate) fn arg(path: &Path) -> Result<&str> {
    path.to_str()
        .ok_or_else(|| Error::format(path, "the path is not UTF-8, so it cannot be passed to sox"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_says_how_to_install_it() {
        let e = run("braid-no-such-tool", &["--version"]).unwrap_err().to_string();
        assert!(e.contains("`braid-no-such-tool` not found") && e.contains(INSTALL), "{e}");
        let e = pipe(("true", &[]), ("braid-no-such-tool", &[])).unwrap_err().to_string();
        assert!(e.contains("not found"), "{e}");
    }

    #[test]
    fn failures_name_the_call_and_its_last_message() {
        let e = run("sh", &["-c", "echo first >&2; echo 'the reason' >&2; exit 3"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("`sh -c") && e.contains("the reason"), "{e}");
        assert_eq!(run("sh", &["-c", "printf hi"]).unwrap(), b"hi");
        pipe(("printf", &["abc"]), ("sh", &["-c", "test \"$(cat)\" = abc"])).unwrap();
        let e = pipe(("printf", &["abc"]), ("sh", &["-c", "cat >/dev/null; exit 1"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("failed"), "{e}");
    }

    #[test]
    fn a_hung_program_is_stopped_at_its_limit() {
        let t = Instant::now();
        let e = run_within("sleep", &["5"], Duration::from_millis(100)).unwrap_err().to_string();
        assert!(e.contains("`sleep 5` ran past its limit of 0.1 s"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(2));
    }
}
