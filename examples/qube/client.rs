//! The client side of every command but `daemon`: one request over the socket, the
//! reply printed as a table, a block or JSON.

use std::io::{self, BufReader, IsTerminal, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;

use crate::cli::{Command, ImageCommand, RunArgs};
use crate::format::{self, CpuSample};
use crate::model::{LimitRequest, RunSpec};
use crate::protocol::{
    read_line, write_line, ContainerView, FailureKind, ImageSource, Reply, ReplyLine, Request,
    RequestLine, WireError,
};

/// A failed command: what to print and the exit code.
#[derive(Debug)]
pub struct Fail {
    /// 1 for a runtime failure, 2 for bad usage or input.
    pub code: u8,
    /// The message, without the `qube:` prefix.
    pub message: String,
}

impl Fail {
    fn runtime(message: impl Into<String>) -> Fail {
        Fail {
            code: 1,
            message: message.into(),
        }
    }

    fn bad_input(message: impl Into<String>) -> Fail {
        Fail {
            code: 2,
            message: message.into(),
        }
    }

    /// Prints the message and gives the exit code.
    pub fn report(self) -> ExitCode {
        eprintln!("qube: {}", self.message);
        ExitCode::from(self.code)
    }
}

/// Runs one client command.
pub fn run(socket: &Path, command: Command) -> Result<(), Fail> {
    let daemon = Daemon { socket };
    match command {
        Command::Daemon(_) => Err(Fail::runtime("the daemon is not a client command")),
        Command::Run(args) => match daemon.call(Request::Run(run_spec(args)))? {
            Reply::Started { id } => print(&format!("{id}\n")),
            other => unexpected(other),
        },
        Command::List(flag) => {
            let views = daemon.containers(Request::List)?;
            if flag.json {
                print_json(&views)
            } else {
                print(&format::list(&views, crate::state::now()))
            }
        }
        Command::Info { container, json } => {
            let views = daemon.containers(Request::Info { target: container })?;
            let view = views
                .first()
                .ok_or_else(|| Fail::runtime("the daemon sent no container"))?;
            if json.json {
                print_json(view)
            } else {
                print(&format::info(view, crate::state::now()))
            }
        }
        Command::Stats {
            containers,
            no_stream,
            json,
        } => stats(&daemon, containers, no_stream, json.json),
        Command::Logs { container, follow } => logs(&daemon, container, follow),
        Command::Stop { container, timeout } => {
            let request = Request::Stop {
                target: container,
                timeout_secs: timeout,
            };
            match daemon.call(request)? {
                Reply::Stopped { container } => print(&format!(
                    "{} {}\n",
                    container.record.id,
                    format::status_long(container.record.status)
                )),
                other => unexpected(other),
            }
        }
        Command::Wait { container } => match daemon.call(Request::Wait { target: container })? {
            Reply::Stopped { container } => print(&format!(
                "{}\n",
                format::status_long(container.record.status)
            )),
            other => unexpected(other),
        },
        Command::Kill { container, signal } => {
            let request = Request::Kill {
                target: container.clone(),
                signal: signal as i32,
            };
            daemon.expect_done(request)?;
            print(&format!("{container}\n"))
        }
        Command::Rm { container, force } => {
            let request = Request::Remove {
                target: container.clone(),
                force,
            };
            daemon.expect_done(request)?;
            print(&format!("{container}\n"))
        }
        Command::Images(flag) => match daemon.call(Request::Images)? {
            Reply::Images { images } if flag.json => print_json(&images),
            Reply::Images { images } => print(&format::images(&images)),
            other => unexpected(other),
        },
        Command::Image(ImageCommand::Import {
            name,
            source,
            busybox,
        }) => {
            let source = match source {
                Some(path) if !busybox => ImageSource::Path(absolute(&path)?),
                _ => ImageSource::Busybox,
            };
            match daemon.call(Request::ImportImage { name, source })? {
                Reply::Images { images } => {
                    for i in images {
                        print(&format!(
                            "imported {} ({})\n",
                            i.name,
                            format::size(qube_cgroup::Bytes(i.size))
                        ))?;
                    }
                    Ok(())
                }
                other => unexpected(other),
            }
        }
        Command::Image(ImageCommand::Rm { name }) => {
            daemon.expect_done(Request::RemoveImage { name: name.clone() })?;
            print(&format!("{name}\n"))
        }
    }
}

fn run_spec(args: RunArgs) -> RunSpec {
    RunSpec {
        name: args.name,
        image: args.image,
        command: args.cmd,
        env: args.env,
        volumes: args.volume,
        isolated: args.isolated,
        restart: args.restart,
        limits: LimitRequest {
            memory: args.memory,
            swap: args.swap,
            cpus: args.cpus,
            pids: args.pids,
        },
    }
}

/// The image source as the daemon sees it: an absolute path that exists.
fn absolute(path: &Path) -> Result<PathBuf, Fail> {
    std::fs::canonicalize(path)
        .map_err(|e| Fail::bad_input(format!("cannot import {}: {e}", path.display())))
}

/// `qube stats`: samples every second and redraws in place, or prints once.
fn stats(daemon: &Daemon<'_>, targets: Vec<String>, once: bool, json: bool) -> Result<(), Fail> {
    let request = || Request::Stats {
        targets: targets.clone(),
    };
    let mut previous = daemon.containers(request())?;
    if json && once {
        return print_json_line(&previous);
    }
    let redraw = io::stdout().is_terminal();
    loop {
        // One shot still takes two samples: CPU % is a rate.
        let interval = if once { 500 } else { 1000 };
        std::thread::sleep(Duration::from_millis(interval));
        let current = daemon.containers(request())?;
        if json {
            print_json_line(&current)?;
        } else {
            let before = |id: &str| previous.iter().find(|v| v.record.id == id).and_then(sample);
            let table = format::stats(&current, &before);
            if redraw && !once {
                print(&format!("\x1b[H\x1b[2J{table}"))?;
            } else {
                print(&format!("{table}\n"))?;
            }
        }
        if once || (!targets.is_empty() && current.iter().all(|v| v.usage.is_none())) {
            return Ok(());
        }
        previous = current;
    }
}

fn sample(view: &ContainerView) -> Option<CpuSample> {
    view.usage.map(|u| CpuSample {
        usage_usec: u.cpu_usec,
        at_usec: view.sampled_at_usec,
    })
}

/// `qube logs`: the stored output, then (with `-f`) new output until the container ends.
fn logs(daemon: &Daemon<'_>, target: String, follow: bool) -> Result<(), Fail> {
    let (mut replies, _conn) = daemon.open(Request::Logs { target, follow })?;
    let mut out = io::stdout().lock();
    loop {
        match replies()? {
            Reply::LogChunk { data } => {
                out.write_all(&data)
                    .and_then(|()| out.flush())
                    .map_err(broken_stdout)?;
            }
            Reply::LogEnd => return Ok(()),
            other => return unexpected(other),
        }
    }
}

/// The daemon at a socket.
struct Daemon<'a> {
    socket: &'a Path,
}

impl Daemon<'_> {
    /// Sends a request and reads the one reply.
    fn call(&self, request: Request) -> Result<Reply, Fail> {
        let (mut next, _conn) = self.open(request)?;
        next()
    }

    /// Sends a request; the returned closure reads one reply at a time, failures turned
    /// into [`Fail`].
    fn open(
        &self,
        request: Request,
    ) -> Result<(impl FnMut() -> Result<Reply, Fail>, UnixStream), Fail> {
        let mut conn = self.connect()?;
        let lost = |e: WireError| {
            Fail::runtime(format!(
                "talking to the daemon at {}: {e}",
                self.socket.display()
            ))
        };
        let sent = write_line(&mut conn, &RequestLine::new(request));
        let reader = conn.try_clone().map_err(|e| Fail::runtime(e.to_string()))?;
        let mut reader = BufReader::new(reader);
        // The daemon refuses a client it will not serve before reading its request, and
        // may have closed the connection before the request was written: the refusal is
        // still there to read, and says more than the broken pipe.
        let mut early = match sent {
            Ok(()) => None,
            Err(e) => Some(read_line::<ReplyLine>(&mut reader).map_err(|_| lost(e))?),
        };
        let socket = self.socket.to_owned();
        let next = move || {
            let line = match early.take() {
                Some(line) => Ok(line),
                None => read_line::<ReplyLine>(&mut reader),
            };
            match line {
                Ok(ReplyLine {
                    reply: Reply::Failed(f),
                    ..
                }) => Err(Fail {
                    code: if f.kind == FailureKind::BadInput {
                        2
                    } else {
                        1
                    },
                    message: f.message,
                }),
                Ok(line) => Ok(line.reply),
                Err(e) => Err(Fail::runtime(format!(
                    "talking to the daemon at {}: {e}",
                    socket.display()
                ))),
            }
        };
        Ok((next, conn))
    }

    fn connect(&self) -> Result<UnixStream, Fail> {
        UnixStream::connect(self.socket).map_err(|e| {
            let path = self.socket.display();
            match e.kind() {
                io::ErrorKind::PermissionDenied => Fail::runtime(format!(
                    "permission denied connecting to the qube daemon at {path}: qube needs root (run it as root, e.g. with sudo)"
                )),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => Fail::runtime(format!(
                    "cannot connect to the qube daemon at {path} ({e}): is `qube daemon` running?"
                )),
                _ => Fail::runtime(format!("cannot connect to the qube daemon at {path}: {e}")),
            }
        })
    }

    fn containers(&self, request: Request) -> Result<Vec<ContainerView>, Fail> {
        match self.call(request)? {
            Reply::Containers { containers } => Ok(containers),
            other => unexpected(other),
        }
    }

    fn expect_done(&self, request: Request) -> Result<(), Fail> {
        match self.call(request)? {
            Reply::Done => Ok(()),
            other => unexpected(other),
        }
    }
}

fn unexpected<T>(reply: Reply) -> Result<T, Fail> {
    Err(Fail::runtime(format!(
        "unexpected reply from the daemon: {reply:?}"
    )))
}

fn print(text: &str) -> Result<(), Fail> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(broken_stdout)
}

fn print_json<T: Serialize + ?Sized>(value: &T) -> Result<(), Fail> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Fail::runtime(e.to_string()))?;
    print(&format!("{text}\n"))
}

/// One sample a line (JSON lines), so a stream of them can be read line by line.
fn print_json_line<T: Serialize + ?Sized>(value: &T) -> Result<(), Fail> {
    let text = serde_json::to_string(value).map_err(|e| Fail::runtime(e.to_string()))?;
    print(&format!("{text}\n"))
}

fn broken_stdout(e: io::Error) -> Fail {
    Fail::runtime(format!("writing to stdout: {e}"))
}
