//! `flotilla image save`, `image load` and `image import`, through the daemon, streamed both
//! ways. `save` writes the daemon's archive to `-o FILE` (under a temporary name beside it,
//! renamed when complete, so a failure never leaves a truncated archive under that name) or to
//! a non-terminal stdout; `load` sends `-i FILE` or stdin (docker-archive or OCI layout,
//! compressed or not) and prints what was loaded as `docker load` does; `import` sends a rootfs
//! tarball (or `-` for stdin) and prints the new image's id. Ctrl-C of a load or import drops
//! the upload, which the daemon rolls back, and exits 130.

use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use clap::Args;

use super::{call, interrupted, interruptible, parse_reference, write};
use crate::api::client::{BodySender, ByteStream, Client, ClientError};

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
    /// A Dockerfile instruction for the image's config (`CMD ["sh"]`, `ENV A=1`, `WORKDIR /x`,
    /// …; repeatable)
    #[arg(short, long, value_name = "INSTRUCTION")]
    pub change: Vec<String>,
}

/// Copies the archive stream into `out`.
async fn copy_to(stream: &mut ByteStream, out: &mut impl Write) -> Result<(), String> {
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("error: save: {e}"))?;
        out.write_all(&chunk)
            .map_err(|e| format!("error: save: write archive: {e}"))?;
    }
    out.flush()
        .map_err(|e| format!("error: save: write archive: {e}"))
}

pub fn save(client: &Client, args: &SaveArgs) -> Result<(), String> {
    for text in &args.images {
        parse_reference(text)?;
    }
    if args.output.is_none() && io::stdout().is_terminal() {
        return Err(
            "error: save: refusing to write an archive to a terminal: use -o FILE or redirect"
                .to_string(),
        );
    }
    let open = |e: ClientError| format!("error: save: {e}");
    match &args.output {
        Some(path) => save_to_path(client, &args.images, path, open),
        None => call(async {
            let mut stream = client.save_images(&args.images).await.map_err(open)?;
            let mut stdout = io::BufWriter::new(io::stdout().lock());
            copy_to(&mut stream, &mut stdout).await
        })?,
    }
}

/// `save -o FILE`: written under `.FILE.tmp-<pid>` beside it, synced, renamed into place.
fn save_to_path(
    client: &Client,
    images: &[String],
    path: &Path,
    open: impl Fn(ClientError) -> String,
) -> Result<(), String> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let file_error = |e: io::Error| format!("error: save: write archive {}: {e}", path.display());
    let result = call(async {
        let mut stream = client.save_images(images).await.map_err(&open)?;
        let file = std::fs::File::create(&tmp).map_err(file_error)?;
        let mut out = io::BufWriter::new(file);
        copy_to(&mut stream, &mut out).await?;
        let file = out.into_inner().map_err(|e| file_error(e.into_error()))?;
        file.sync_all().map_err(file_error)?;
        std::fs::rename(&tmp, path).map_err(file_error)
    })
    .and_then(|r| r);
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Sends what `reader` yields on `tx` from a thread of its own (reads block), in 256 KiB
/// chunks; a read error aborts the upload.
fn feed(mut reader: impl Read + Send + 'static, tx: BodySender) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if tx
                        .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
}

/// The archive to send: `path`, or stdin when it is not a terminal.
fn source(path: Option<&Path>, what: &str) -> Result<Box<dyn Read + Send>, String> {
    match path {
        Some(path) => std::fs::File::open(path)
            .map(|f| Box::new(f) as Box<dyn Read + Send>)
            .map_err(|e| format!("error: {what}: open {}: {e}", path.display())),
        None => Ok(Box::new(io::stdin())),
    }
}

pub fn load(client: &Client, args: &LoadArgs) -> Result<(), String> {
    if args.input.is_none() && io::stdin().is_terminal() {
        return Err("error: load: no archive on stdin: use -i FILE or redirect one in".to_string());
    }
    let reader = source(args.input.as_deref(), "load")?;
    let loaded = interruptible(async {
        let (tx, answer) = client.load_images();
        feed(reader, tx);
        answer.await
    })?;
    let loaded = match loaded {
        None => interrupted("load"),
        Some(r) => r.map_err(|e| format!("error: load: {e}"))?,
    };
    if !args.quiet {
        let mut text = String::new();
        for image in &loaded {
            match &image.name {
                Some(name) => text.push_str(&format!("Loaded image: {}\n", super::familiar(name))),
                None => text.push_str(&format!("Loaded image ID: {}\n", image.id)),
            }
        }
        write(&text)?;
    }
    Ok(())
}

pub fn import(client: &Client, args: &ImportArgs) -> Result<(), String> {
    let reference = parse_reference(&args.reference)?;
    let path = (args.file != "-").then(|| Path::new(&args.file));
    let reader = source(path, "import")?;
    let name = reference.to_string();
    let image = interruptible(async {
        let (tx, answer) = client.import_image(&name, &args.change);
        feed(reader, tx);
        answer.await
    })?;
    let image = match image {
        None => interrupted("import"),
        Some(r) => r.map_err(|e| format!("error: import: {e}"))?,
    };
    write(&format!("{}\n", image.id))
}
