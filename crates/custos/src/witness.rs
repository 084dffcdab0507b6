//! `custos witness serve`: this custos as a C2SP tlog-witness for other custos ledgers. It
//! cosigns a ledger's checkpoints only when they extend the last one it saw, and serves the
//! latest for `custos audit verify --witness URL`.

use anyhow::{Context as _, Result};
use clap::Subcommand;
use custos_ledger::{NoteSigner, NoteVerifier};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum WitnessCmd {
    /// Serve the tlog-witness protocol (POST /add-checkpoint) and the latest cosigned
    /// checkpoint of each log (GET /checkpoint?origin=…).
    #[command(
        after_help = "Examples:\n  custos audit keygen --name witness.example/w1 --out /etc/custos-witness\n  custos witness serve --key-file /etc/custos-witness/ledger.key --log-key acme-ledger.pub --listen 127.0.0.1:7380\n\nThen, in the witnessed custos's custos.toml:\n  [[audit.witnesses]]\n  url = \"http://127.0.0.1:7380\"\n  public_key_file = \"witness.pub\"\n\nRun it on another host than the database it witnesses: it is an anchor only if the\ndatabase's administrators cannot rewrite its state."
    )]
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:7380")]
        listen: std::net::SocketAddr,
        /// The witness's private key (from `custos audit keygen --name <witness name>`).
        #[arg(long, value_name = "FILE")]
        key_file: PathBuf,
        /// A witnessed ledger's public key (repeatable); its name is the log's origin.
        #[arg(long = "log-key", value_name = "FILE", required = true)]
        log_keys: Vec<PathBuf>,
        /// Where the latest checkpoint of each log is kept.
        #[arg(long, default_value = ".custos/witness")]
        state_dir: PathBuf,
    },
}

fn read(path: &PathBuf) -> Result<String> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .trim()
        .to_owned())
}

pub async fn run(cmd: WitnessCmd) -> Result<ExitCode> {
    let WitnessCmd::Serve {
        listen,
        key_file,
        log_keys,
        state_dir,
    } = cmd;
    let signer = NoteSigner::from_key(&read(&key_file)?)
        .with_context(|| format!("{} is not a custos key", key_file.display()))?;
    let mut logs = Vec::new();
    for k in &log_keys {
        logs.push(
            NoteVerifier::from_key(&read(k)?)
                .with_context(|| format!("{} is not a ledger public key", k.display()))?,
        );
    }
    let names: Vec<String> = logs.iter().map(|l| l.name().to_owned()).collect();
    let witness = custos_gateway::witness::Witness::open(signer, logs, state_dir)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    eprintln!(
        "custos witness listening on http://{} for {}",
        listener.local_addr()?,
        names.join(", ")
    );
    witness
        .serve(listener)
        .await
        .context("the witness server failed")?;
    Ok(ExitCode::SUCCESS)
}
