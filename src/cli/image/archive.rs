//! `flotilla image save`, `image load` and `image import`: thin commands over
//! [`crate::image::archive`]. `save` writes to `-o FILE` (atomically) or to a non-terminal
//! stdout; `load` reads `-i FILE` or stdin (docker-archive or OCI layout, compressed or not) and
//! prints what it loaded as `docker load` does; `import` turns a rootfs tarball (or `-` for stdin)
//! into a one-layer image and prints its id.

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;

use clap::Args;

use super::{open_store, parse_reference, write};
use crate::cli::EngineArgs;
use crate::image::archive;

#[derive(Args, Debug, Clone)]
pub struct SaveArgs {
    /// Write to this file instead of stdout
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The images to save
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// Read from this file instead of stdin
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Print nothing when done
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug, Clone)]
pub struct ImportArgs {
    /// The rootfs tarball (plain, gzip or zstd), `-` for stdin
    #[arg(value_name = "FILE")]
    pub file: String,
    /// The name of the new image
    #[arg(value_name = "REF")]
    pub reference: String,
}

pub fn save(engine: &EngineArgs, args: &SaveArgs) -> Result<(), String> {
    let references = args
        .images
        .iter()
        .map(|text| parse_reference(text))
        .collect::<Result<Vec<_>, _>>()?;
    let store = open_store(engine)?;
    let failed = |e: archive::ArchiveError| format!("error: save: {e}");
    match &args.output {
        Some(path) => archive::save_to_path(&store, &references, path).map_err(failed),
        None => {
            let stdout = io::stdout();
            if stdout.is_terminal() {
                return Err(
                    "error: save: refusing to write an archive to a terminal: use -o FILE or redirect"
                        .to_string(),
                );
            }
            let writer = archive::save(&store, &references, io::BufWriter::new(stdout.lock()))
                .map_err(failed)?;
            writer
                .into_inner()
                .map_err(|e| e.into_error())
                .and_then(|mut w| w.flush())
                .map_err(|e| format!("error: save: write archive: {e}"))
        }
    }
}

pub fn load(engine: &EngineArgs, args: &LoadArgs) -> Result<(), String> {
    let store = open_store(engine)?;
    let loaded = match &args.input {
        Some(path) => {
            let file = std::fs::File::open(path)
                .map_err(|e| format!("error: load: open {}: {e}", path.display()))?;
            archive::load(&store, file)
        }
        None if io::stdin().is_terminal() => {
            return Err(
                "error: load: no archive on stdin: use -i FILE or redirect one in".to_string(),
            );
        }
        None => archive::load(&store, io::stdin().lock()),
    }
    .map_err(|e| format!("error: load: {e}"))?;
    if !args.quiet {
        let mut text = String::new();
        for image in &loaded {
            match &image.reference {
                Some(reference) => {
                    text.push_str(&format!("Loaded image: {}\n", reference.familiar()))
                }
                None => text.push_str(&format!(
                    "Loaded image ID: {}\n",
                    image.record.config_digest
                )),
            }
        }
        write(&text)?;
    }
    Ok(())
}

pub fn import(engine: &EngineArgs, args: &ImportArgs) -> Result<(), String> {
    let reference = parse_reference(&args.reference)?;
    let store = open_store(engine)?;
    let image = if args.file == "-" {
        archive::import(&store, io::stdin().lock(), &reference)
    } else {
        let file = std::fs::File::open(&args.file)
            .map_err(|e| format!("error: import: open {}: {e}", args.file))?;
        archive::import(&store, file, &reference)
    }
    .map_err(|e| format!("error: import: {e}"))?;
    write(&format!("{}\n", image.config_digest))
}
