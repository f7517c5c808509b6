//! Operator commands: they talk to the daemon over the control socket, or read config files.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use control::{ClientError, Reply, Request, Status};

const TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) fn ask(socket: &Path, req: Request) -> Result<Reply, ClientError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ClientError::Io(socket.display().to_string(), e))?;
    rt.block_on(control::request(socket, req, TIMEOUT))
}

/// Prints the daemon's reply or its error; a daemon error's details follow one per line.
pub(crate) fn report(
    r: Result<Reply, ClientError>,
    json: bool,
    show: impl Fn(&Reply),
) -> anyhow::Result<ExitCode> {
    match r {
        Ok(reply) => {
            if json {
                let body = match &reply {
                    Reply::Status(s) => serde_json::to_value(s)?,
                    Reply::Reloaded(o) => serde_json::to_value(o)?,
                    Reply::Rules(f) => serde_json::to_value(f)?,
                    Reply::Regs { registrations } => serde_json::to_value(registrations)?,
                    Reply::Leases { leases } => serde_json::to_value(leases)?,
                    Reply::Released { addresses } => serde_json::to_value(addresses)?,
                    Reply::Calls { calls } => serde_json::to_value(calls)?,
                    Reply::Trace(t) => serde_json::to_value(t)?,
                };
                println!("{}", serde_json::to_string_pretty(&body)?);
            } else {
                show(&reply);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(ClientError::Daemon { error, details }) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"error": error, "details": details})
                );
            } else {
                eprintln!("voxgate: {error}");
                for d in details {
                    eprintln!("{d}");
                }
            }
            Ok(ExitCode::FAILURE)
        }
        Err(e) => anyhow::bail!(e),
    }
}

/// `voxgate status`.
pub fn status(socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
    report(ask(socket, Request::Status), json, |r| {
        if let Reply::Status(s) = r {
            print!("{}", render_status(s));
        }
    })
}

/// `voxgate leases`.
pub fn leases(socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
    report(ask(socket, Request::Leases), json, |r| {
        let Reply::Leases { leases } = r else { return };
        if leases.is_empty() {
            println!("no leases");
            return;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        println!(
            "{:<16} {:<18} {:<10} {:<10} {:>9}  {:<20} VENDOR",
            "ADDRESS", "MAC", "SCOPE", "STATE", "EXPIRES", "HOSTNAME"
        );
        for l in leases {
            println!(
                "{:<16} {:<18} {:<10} {:<10} {:>9}  {:<20} {}",
                l.address,
                l.mac,
                l.scope,
                l.state,
                if l.expires > now {
                    ago(l.expires - now)
                } else {
                    "-".into()
                },
                l.hostname.as_deref().unwrap_or("-"),
                l.vendor.as_deref().unwrap_or("-")
            );
        }
    })
}

/// `voxgate leases release MAC`.
pub fn lease_release(socket: &Path, mac: String, json: bool) -> anyhow::Result<ExitCode> {
    report(
        ask(socket, Request::LeaseRelease { mac: mac.clone() }),
        json,
        |r| {
            if let Reply::Released { addresses } = r {
                if addresses.is_empty() {
                    println!("{mac} holds no lease");
                } else {
                    println!("released {} from {mac}", addresses.join(", "));
                }
            }
        },
    )
}

/// `voxgate calls`.
pub fn calls(socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
    report(ask(socket, Request::Calls), json, |r| {
        let Reply::Calls { calls } = r else { return };
        if calls.is_empty() {
            println!("no calls");
            return;
        }
        println!(
            "{:<10} {:<9} {:<10} {:>7}  {:<18} {:<18} {:<30} TO",
            "CALL", "DIRECTION", "STATE", "TALK", "FROM PHONE", "FROM PROV.", "FROM"
        );
        for c in calls {
            let s = |k: &str| c[k].as_str().unwrap_or("-").to_string();
            // Loss and MOS of the audio reaching the box from each side (first stream), and
            // the round trip to that side when RTCP has measured it.
            let leg = |side: &str| {
                let l = &c["media"]["streams"][0][side];
                let r = &l["received"];
                let q = match (r["loss_percent"].as_f64(), r["mos"].as_f64()) {
                    (Some(l), Some(m)) => format!("{l:.1}% {m:.1}"),
                    _ => "-".into(),
                };
                match l["rtt_ms"].as_f64() {
                    Some(rtt) => format!("{q} {rtt:.0}ms"),
                    None => q,
                }
            };
            println!(
                "{:<10} {:<9} {:<10} {:>7}  {:<18} {:<18} {:<30} {}",
                s("key"),
                s("direction"),
                s("state"),
                ago(c["talk_secs"].as_u64().unwrap_or(0)),
                leg("lan"),
                leg("wan"),
                s("from"),
                s("to")
            );
        }
    })
}

/// `voxgate sip trace`: one block per message, until Ctrl-C or the daemon stops.
pub fn sip_trace(socket: &Path, filter: Option<String>, json: bool) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(control::stream(socket, Request::SipTrace { filter }, |r| {
        if let Reply::Trace(t) = r {
            if json {
                println!("{}", serde_json::to_string(&t).unwrap_or_default());
            } else {
                let secs = t.at_ms / 1000;
                let arrow = if t.direction == "in" { "<-" } else { "->" };
                println!(
                    "{:02}:{:02}:{:02}.{:03} {} box {arrow} {}\n{}",
                    secs / 3600 % 24,
                    secs / 60 % 60,
                    secs % 60,
                    t.at_ms % 1000,
                    t.side.to_uppercase(),
                    t.peer,
                    t.message.trim_end()
                );
                println!();
            }
            // A closed pipe (e.g. `| head`) ends the trace.
            return std::io::Write::flush(&mut std::io::stdout()).is_ok();
        }
        true
    }));
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(ClientError::Daemon { error, details }) => {
            eprintln!("voxgate: {error}");
            for d in details {
                eprintln!("{d}");
            }
            Ok(ExitCode::FAILURE)
        }
        Err(e) => anyhow::bail!(e),
    }
}

/// `voxgate regs`.
pub fn regs(socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
    report(ask(socket, Request::Regs), json, |r| {
        if let Reply::Regs { registrations } = r {
            if registrations.is_empty() {
                println!("no registrations");
                return;
            }
            println!(
                "{:<36} {:<12} {:>8}  {:<22} {:<22} {:<40} LAST ERROR",
                "AOR", "STATE", "EXPIRES", "PHONE", "SERVER", "UPSTREAM CONTACT"
            );
            for g in registrations {
                println!(
                    "{:<36} {:<12} {:>8}  {:<22} {:<22} {:<40} {}",
                    g.aor,
                    g.state,
                    ago(g.expires_in),
                    g.phone_addr,
                    g.upstream,
                    g.upstream_contact,
                    g.last_error.as_deref().unwrap_or("-")
                );
            }
        }
    })
}

/// `voxgate reload`.
pub fn reload(socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
    report(ask(socket, Request::Reload), json, |r| {
        if let Reply::Reloaded(o) = r {
            let what = if o.changed { "reloaded" } else { "unchanged" };
            println!("configuration {what}: digest {}", short(&o.digest));
        }
    })
}

fn short(digest: &str) -> &str {
    &digest[..digest.len().min(12)]
}

fn ago(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s:02}s"),
        (0, _, _) => format!("{h}h{m:02}m"),
        _ => format!("{d}d{h:02}h"),
    }
}

fn render_status(s: &Status) -> String {
    let mut out = format!(
        "voxgate {} (pid {}) up {}, site {}\nconfig   {} (digest {}, profile {}, loaded {} ago)\n",
        s.version,
        s.pid,
        ago(s.uptime_secs),
        s.site,
        s.config.path,
        short(&s.config.digest),
        s.config.profile,
        ago(s.config.loaded_secs_ago)
    );
    if !s.config.rejected.is_empty() {
        out += "         last reload REJECTED, running the configuration above:\n";
        for line in &s.config.rejected {
            out += &format!("           {line}\n");
        }
    }
    if let Some(f) = &s.firewall {
        out += &format!("firewall {}\n", f.last_event);
    }
    if let Some(sip) = &s.sip {
        out += &format!(
            "sip      {} registered, {} calls, {} subscriptions, {} dropped; public address {}\n",
            sip.registrations,
            sip.calls,
            sip.subscriptions,
            sip.dropped,
            sip.public_address.as_deref().unwrap_or("not learned yet")
        );
        for u in &sip.upstreams {
            let seen = u.last_ok_secs.map_or("no answer yet".to_string(), |s| {
                format!("answered {} ago", ago(s))
            });
            out += &format!(
                "         provider {} {} ({seen}){}\n",
                u.address,
                u.state,
                u.last_error
                    .as_ref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            );
        }
    }
    out += &format!(
        "\n{:<10} {:<11} {:>8} {:>8}  {}\n",
        "SERVICE", "STATE", "SINCE", "RESTARTS", "LAST ERROR"
    );
    for svc in &s.services {
        out += &format!(
            "{:<10} {:<11} {:>8} {:>8}  {}\n",
            svc.name,
            svc.state.to_string(),
            ago(svc.since_secs),
            svc.restarts,
            svc.last_error.as_deref().unwrap_or("-")
        );
    }
    out
}

fn load(file: Option<String>) -> Result<config::Loaded, config::Errors> {
    config::load_ref(file.as_deref().unwrap_or(config::DEFAULT_CONFIG_PATH))
}

/// `voxgate config check`.
pub fn config_check(file: Option<String>, json: bool) -> anyhow::Result<ExitCode> {
    match load(file) {
        Ok(l) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"ok": true, "digest": l.digest, "errors": []})
                );
            } else {
                println!(
                    "{}: ok (profile {} {}, digest {})",
                    l.path.display(),
                    l.profile.name,
                    l.profile.revision,
                    short(&l.digest)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if json {
                println!("{}", serde_json::json!({"ok": false, "errors": e.0}));
            } else {
                eprintln!("{e}");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `voxgate config show`.
pub fn config_show(file: Option<String>, json: bool) -> anyhow::Result<ExitCode> {
    match load(file) {
        Ok(l) if json => println!("{}", serde_json::to_string_pretty(&l.config)?),
        Ok(l) => print!(
            "# effective configuration of {} (defaults filled in)\n# provider profile: {} ({})\n{}",
            l.path.display(),
            l.profile.name,
            l.profile_origin,
            config::to_yaml(&l.config)
        ),
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `voxgate config schema`.
pub fn config_schema(profile: bool) -> anyhow::Result<ExitCode> {
    let schema = if profile {
        config::profile_schema()
    } else {
        config::config_schema()
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&schema).context("rendering the schema")?
    );
    Ok(ExitCode::SUCCESS)
}
