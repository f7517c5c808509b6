//! `voxgate`: the daemon (`voxgate run`) and the operator commands that talk to it.

mod cli;
mod daemon;
mod rules;
mod services;
mod update;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Voice-network edge firewall and SBC.
#[derive(Parser)]
#[command(name = "voxgate", version, about)]
struct Cli {
    /// Control socket of the running daemon.
    #[arg(
        long,
        global = true,
        env = "VOXGATE_SOCKET",
        default_value = "/run/voxgate/control.sock"
    )]
    socket: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: every service in one process, until SIGTERM.
    Run(RunArgs),
    /// Show the daemon's version, uptime, configuration and services.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// DHCP leases of the voice network; `leases release MAC` frees a phone's lease.
    Leases {
        #[command(subcommand)]
        action: Option<LeasesCommand>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Calls in progress.
    Calls {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// SIP tools.
    #[command(subcommand)]
    Sip(SipCommand),
    /// The phones' registrations relayed to the provider.
    Regs {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Make the daemon re-read its configuration (as SIGHUP does) and report the outcome.
    Reload {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check, show or describe the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Show, explain, compare, apply and confirm the generated firewall rules.
    #[command(subcommand)]
    Rules(rules::RulesCommand),
    /// Provider allowlist updates.
    #[command(subcommand)]
    Allowlist(rules::AllowlistCommand),
    /// Software updates of the appliance: A/B root slots with automatic fallback.
    #[command(subcommand)]
    Update(update::UpdateCommand),
}

/// Options of `voxgate run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Configuration file; `@lab` is the built-in lab demo configuration.
    #[arg(long, short, default_value = config::DEFAULT_CONFIG_PATH)]
    pub config: String,
    /// Override management.control_socket.
    #[arg(long)]
    pub control_socket: Option<PathBuf>,
    /// Override management.state_dir.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How logs are written.
#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Subcommand)]
enum SipCommand {
    /// Print SIP messages live as the box receives and sends them (Ctrl-C to stop).
    Trace {
        /// Only messages containing this text (a number, a Call-ID, an address).
        #[arg(long)]
        filter: Option<String>,
        /// One JSON object per message.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum LeasesCommand {
    /// Free the lease(s) held by a phone.
    Release {
        /// The phone's MAC address.
        mac: String,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file and print every error with its position.
    Check {
        /// The file (default: /etc/voxgate/voxgate.yaml; `@lab`: the built-in lab config).
        file: Option<String>,
        /// Print the errors as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the effective configuration, defaults filled in.
    Show {
        /// The file (default: /etc/voxgate/voxgate.yaml; `@lab`: the built-in lab config).
        file: Option<String>,
        /// Print JSON instead of YAML.
        #[arg(long)]
        json: bool,
    },
    /// Print the JSON Schema of the configuration file (or of provider profiles).
    Schema {
        /// The schema of provider profiles instead.
        #[arg(long)]
        profile: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => daemon::main(args),
        Command::Status { json } => cli::status(&cli.socket, json),
        Command::Reload { json } => cli::reload(&cli.socket, json),
        Command::Regs { json } => cli::regs(&cli.socket, json),
        Command::Calls { json } => cli::calls(&cli.socket, json),
        Command::Sip(SipCommand::Trace { filter, json }) => {
            cli::sip_trace(&cli.socket, filter, json)
        }
        Command::Leases { action: None, json } => cli::leases(&cli.socket, json),
        Command::Leases {
            action: Some(LeasesCommand::Release { mac }),
            json,
        } => cli::lease_release(&cli.socket, mac, json),
        Command::Config(ConfigCommand::Check { file, json }) => cli::config_check(file, json),
        Command::Config(ConfigCommand::Show { file, json }) => cli::config_show(file, json),
        Command::Config(ConfigCommand::Schema { profile }) => cli::config_schema(profile),
        Command::Rules(cmd) => rules::run(&cli.socket, cmd),
        Command::Allowlist(cmd) => rules::allowlist(&cli.socket, cmd),
        Command::Update(cmd) => update::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("voxgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}
