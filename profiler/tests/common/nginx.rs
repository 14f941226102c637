//! A real nginx (Debian's `nginx-light`) serving one file on a loopback port, and curl clients
//! fetching it: the load of the root tests that watch a real server.
use std::{
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use super::{ensure_program, free_port, scratch};

/// Size of the served file: a megabyte and a few bytes, not a multiple of any page.
pub const FILE_SIZE: u64 = 1024 * 1024 + 3;

/// An nginx master with one worker, stopped (both) when dropped.
pub struct Nginx {
    child: Child,
    pub dir: super::Scratch,
    pub port: u16,
    pub master: u32,
    pub worker: u32,
}

/// What the curl clients counted.
#[derive(Debug, Default)]
pub struct Fetched {
    pub transfers: u64,
    pub body_bytes: u64,
    pub header_bytes: u64,
    pub request_bytes: u64,
}

impl Nginx {
    /// Starts nginx in a scratch folder named after `name`; returns once it accepts and its
    /// worker is forked (the connection that checked is closed).
    pub fn start(name: &str) -> Self {
        ensure_program("nginx", "nginx-light");
        ensure_program("curl", "curl");
        let dir = scratch(name);
        let open = |p: &Path, mode| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod")
        };
        // The worker runs as an unprivileged user: it must reach the files.
        open(&dir, 0o755);
        let www = dir.join("www");
        std::fs::create_dir_all(&www).expect("www");
        open(&www, 0o755);
        let body: Vec<u8> = (0..FILE_SIZE).map(|i| (i % 251) as u8).collect();
        std::fs::write(www.join("f.bin"), &body).expect("file");
        open(&www.join("f.bin"), 0o644);
        let port = free_port();
        let d = dir.display();
        let conf = format!(
            "daemon off;\nmaster_process on;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log;\nevents {{ worker_connections 64; }}\n\
             http {{\n  sendfile on;\n  access_log off;\n  client_body_temp_path {d}/cb;\n  \
             proxy_temp_path {d}/px;\n  fastcgi_temp_path {d}/fc;\n  uwsgi_temp_path {d}/uw;\n  \
             scgi_temp_path {d}/sc;\n  server {{ listen 127.0.0.1:{port}; root {}; }}\n}}\n",
            www.display()
        );
        std::fs::write(dir.join("nginx.conf"), conf).expect("conf");
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdin(Stdio::null())
            .spawn()
            .expect("start nginx");
        let master = child.id();
        let mut server = Self {
            child,
            dir,
            port,
            master,
            worker: 0,
        };
        for _ in 0..500 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && let Ok(c) =
                    std::fs::read_to_string(format!("/proc/{master}/task/{master}/children"))
                && let Some(w) = c.split_whitespace().next().and_then(|w| w.parse().ok())
            {
                server.worker = w;
                // The checking connection is closed before the caller starts watching.
                std::thread::sleep(Duration::from_millis(100));
                return server;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "nginx did not start: {}",
            std::fs::read_to_string(server.dir.join("error.log")).unwrap_or_default()
        )
    }

    /// `clients` curl processes at once, each fetching the file `fetches` times on one
    /// connection; every body must arrive whole.
    pub fn fetch(&self, clients: usize, fetches: usize) -> Fetched {
        let url = format!("http://127.0.0.1:{}/f.bin", self.port);
        let curls: Vec<Child> = (0..clients)
            .map(|_| {
                let mut c = Command::new("curl");
                c.args([
                    "-s",
                    "-w",
                    "%{size_download} %{size_header} %{size_request}\\n",
                ]);
                for _ in 0..fetches {
                    c.args(["-o", "/dev/null", &url]);
                }
                c.stdout(Stdio::piped()).spawn().expect("curl")
            })
            .collect();
        let mut f = Fetched::default();
        for c in curls {
            let out = c.wait_with_output().expect("curl output");
            assert!(out.status.success(), "curl failed");
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let v: Vec<u64> = line
                    .split_whitespace()
                    .map(|x| x.parse().expect("curl number"))
                    .collect();
                assert_eq!(v[0], FILE_SIZE, "a client received a short body");
                f.body_bytes += v[0];
                f.header_bytes += v[1];
                f.request_bytes += v[2];
                f.transfers += 1;
            }
        }
        assert_eq!(f.transfers, (clients * fetches) as u64);
        f
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        use nix::{sys::signal, unistd::Pid};
        let _ = signal::kill(
            Pid::from_raw(self.child.id() as i32),
            signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
        if self.worker != 0 {
            let _ = signal::kill(Pid::from_raw(self.worker as i32), signal::Signal::SIGKILL);
        }
    }
}
