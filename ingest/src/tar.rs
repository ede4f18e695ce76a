//! Tar shard readers: ImageNet per-synset tars and flat class-directory tars, plus the
//! streaming tar framing ([`TarStream`]) that [`crate::webdataset`] shares.
//!
//! Layout (FORMATS.md §4, POSIX ustar): 512-byte header blocks, each member's data padded to
//! 512 bytes, two zero blocks at the end (tolerated missing). GNU `L` (long name) / `K` (long
//! link) members and pax `x` members describe the member that follows them; pax `g` (global)
//! members pass through as non-file members, as in the `tar` crate.
//!
//! ```text
//! [L/K/x header][ext data, padded]... [header][data .. padded to 512] ... [0 x 512][0 x 512]
//!  ^ extension members (optional)      ^ raw_header_position = RawRecord::offset
//! ```
//!
//! Why the framing is done here and not by `tar::Archive::entries`: an `Entries` borrows its
//! `Archive`, so a boxed `'static` [`ShardReader`] cannot own both; and the crate reads long-name
//! and pax members whole whatever size they declare. Header *fields* are still decoded by
//! `tar::Header` (octal / base-256 sizes, the ustar prefix, the checksum field), and the framing
//! follows the crate's rules (which headers are extensions, pax `size` overriding the header,
//! a GNU long name winning over a pax `path`), so names, sizes and offsets agree with
//! `tar::Archive` on valid archives: a property test checks that.
//!
//! Invariants every reader here keeps:
//! - Sequential reads only (a member of an outer tar or a pipe works); the data of a member
//!   that is not needed is skipped through a small buffer, never loaded.
//! - At most one member's data in memory, and never more than `max_record_bytes` of it: the
//!   declared size is checked before anything is allocated. Extension members are capped at
//!   [`MAX_EXTENSION_BYTES`].
//! - A record is yielded only when all its declared bytes were read. Truncation or a corrupt
//!   header ends the stream with one error (the place is lost); everything before is yielded.

use crate::source::MappedRegion;
use crate::{RawLabel, RawPayload, RawRecord, ReaderConfig, RecordError, RejectKind, ShardReader};
use bytes::Bytes;
use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// Tar block size: headers are one block, data is padded to a multiple of it.
const BLOCK_BYTES: u64 = 512;

/// Read-ahead of the streaming readers. Without it every header is one `read` call: on a
/// page-cached file of 3 KB members (release build) reading ran at 0.8 GB/s unbuffered and
/// 1.5-1.9 GB/s with 64 KiB; with 110 KB members 3.3-3.6 GB/s either way (members larger than
/// the buffer are read straight into their `Vec`).
const STREAM_BUFFER_BYTES: usize = 64 << 10;

/// Largest GNU long-name / long-link or pax member read into memory. Real ones hold a path
/// (PATH_MAX is 4 KiB) and a few attributes; 1 MiB leaves room for large xattrs.
pub const MAX_EXTENSION_BYTES: u64 = 1 << 20;

/// A regular-file member of a tar, found by a header skim (seeking over data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarMember {
    /// Full member name (GNU long names and pax paths applied).
    pub name: String,
    /// Offset of the member's first data byte in the tar file.
    pub data_offset: u64,
    pub size: u64,
}

/// Lists regular-file members of a seekable tar file, reading only headers.
///
/// Data is seeked over, so listing the 1.3 TB ImageNet-21k tar reads ~11 MB of headers.
/// Names that are not UTF-8 are converted lossily (the caller matches them against patterns
/// such as `nXXXXXXXX.tar`). A file cut inside the *last* member's data still lists that
/// member with its declared size: reading it then reports the truncation after yielding what
/// is there. Any other damage (a corrupt or cut header, cut padding) is an
/// [`io::ErrorKind::InvalidData`] / [`io::ErrorKind::UnexpectedEof`] error naming the byte offset.
pub fn list_members(path: &Path) -> io::Result<Vec<TarMember>> {
    let file = File::open(path)?;
    let file_bytes = file.metadata()?.len();
    let mut stream = TarStream::new(Seeking { file, file_bytes, position: 0 });
    let mut members: Vec<TarMember> = Vec::new();
    loop {
        match stream.next_member() {
            Ok(Some(member)) => {
                if member.is_file() {
                    members.push(TarMember {
                        name: member.name_lossy().into_owned(),
                        data_offset: member.data_offset,
                        size: member.size,
                    });
                }
            }
            Ok(None) => return Ok(members),
            Err(error) => {
                let cut_in_last_data = error.kind == RejectKind::Truncated
                    && members.last().is_some_and(|last| last.data_offset.saturating_add(last.size) > file_bytes);
                if cut_in_last_data {
                    return Ok(members);
                }
                let kind = match error.kind {
                    RejectKind::Truncated => io::ErrorKind::UnexpectedEof,
                    _ => io::ErrorKind::InvalidData,
                };
                // Every reason of the framing names the byte offset it refers to.
                return Err(io::Error::new(kind, error.reason));
            }
        }
    }
}

/// Reader of one per-synset ImageNet tar (`nXXXXXXXX.tar`, flat `nXXXXXXXX_N.JPEG` members).
///
/// Key `{wnid}/{stem}` (stem: the member's file name without directory and last extension),
/// path = the member name, label = [`RawLabel::ClassName`]`(wnid)`.
pub fn imagenet_inner_reader<R: Read + Send + 'static>(
    stream: R,
    wnid: String,
    config: &ReaderConfig,
) -> Box<dyn ShardReader> {
    imagenet_inner_reader_of(buffered_source(stream), wnid, config)
}

/// [`imagenet_inner_reader`] over any [`TarSource`] (a mapped shard: images are views of it).
pub(crate) fn imagenet_inner_reader_of<S: TarSource + Send + 'static>(
    source: S,
    wnid: String,
    config: &ReaderConfig,
) -> Box<dyn ShardReader> {
    Box::new(TarImageReader::new(source, Naming::ImageNet { wnid }, config))
}

/// Reader of a flat tar whose members' parent directory names the class.
///
/// Key `{shard_stem}/{member path without extension}` (leading `./` and `/` removed), path = the
/// member name as stored, label = [`RawLabel::ClassName`] of the immediate parent directory, or
/// [`RawLabel::Missing`] for a member at the top level.
pub fn flat_tar_reader<R: Read + Send + 'static>(
    stream: R,
    shard_stem: String,
    config: &ReaderConfig,
) -> Box<dyn ShardReader> {
    flat_tar_reader_of(buffered_source(stream), shard_stem, config)
}

/// [`flat_tar_reader`] over any [`TarSource`].
pub(crate) fn flat_tar_reader_of<S: TarSource + Send + 'static>(
    source: S,
    shard_stem: String,
    config: &ReaderConfig,
) -> Box<dyn ShardReader> {
    Box::new(TarImageReader::new(source, Naming::Flat { shard_stem }, config))
}

/// How a tar image reader turns a member name into a key and a label.
enum Naming {
    ImageNet { wnid: String },
    Flat { shard_stem: String },
}

/// One image per regular-file member: the ImageNet inner tar and flat tar readers.
struct TarImageReader<S> {
    stream: TarStream<S>,
    naming: Naming,
    max_record_bytes: u64,
    next_index: u64,
    /// The last member was rejected as over the size limit; its data is being skipped.
    skipping_rejected: bool,
}

impl<S: TarSource> TarImageReader<S> {
    fn new(source: S, naming: Naming, config: &ReaderConfig) -> Self {
        TarImageReader {
            stream: TarStream::new(source),
            naming,
            max_record_bytes: config.max_record_bytes,
            next_index: 0,
            skipping_rejected: false,
        }
    }

    fn read_member(&mut self, index: u64, member: &MemberHeader) -> Result<RawRecord, RecordError> {
        let offset = member.header_offset;
        let Ok(name) = std::str::from_utf8(&member.name) else {
            return Err(RecordError::new(RejectKind::Malformed, "member name is not UTF-8")
                .at(index, offset)
                .named(member.name_lossy()));
        };
        let located = |error: RecordError| error.at(index, offset).named(name);
        check_member_size(member.size, self.max_record_bytes).map_err(located)?;
        let bytes = self.stream.read_data(member).map_err(located)?;
        let (key, label) = match &self.naming {
            Naming::ImageNet { wnid } => {
                let file_name = name.rsplit('/').next().unwrap_or(name);
                (format!("{wnid}/{}", strip_extension(file_name)), RawLabel::ClassName(wnid.clone()))
            }
            Naming::Flat { shard_stem } => {
                let normalized = normalize_member_name(name);
                let label =
                    parent_dir_name(normalized).map_or(RawLabel::Missing, |dir| RawLabel::ClassName(dir.to_owned()));
                (format!("{shard_stem}/{}", strip_extension(normalized)), label)
            }
        };
        Ok(RawRecord { index, offset, payload: RawPayload::Image { key, path: Some(name.to_owned()), bytes, label } })
    }
}

impl<S: TarSource + Send> ShardReader for TarImageReader<S> {
    fn next_record(&mut self) -> Option<Result<RawRecord, RecordError>> {
        loop {
            let member = match self.stream.next_member() {
                Ok(Some(member)) => member,
                Ok(None) => return None,
                // The data of an over-limit member, already rejected, ends the stream: that
                // record is reported once (its reject says it was skipped), and the shard ends.
                Err(error) if self.skipping_rejected => {
                    tracing::debug!("stream ends inside a rejected over-limit member: {error}");
                    return None;
                }
                // Damage between members loses the place: it is the next record that could
                // not be framed, so the reject carries that record's index.
                Err(error) if error.index.is_none() => return Some(Err(error.with_index(self.next_index))),
                Err(error) => return Some(Err(error)),
            };
            self.skipping_rejected = false;
            // Directories, links, pax globals: not records; their data is skipped on the next call.
            if !member.is_file() {
                continue;
            }
            let index = self.next_index;
            self.next_index += 1;
            let record = self.read_member(index, &member);
            self.skipping_rejected = matches!(&record, Err(e) if e.kind == RejectKind::BadLength);
            return Some(record);
        }
    }

    fn bytes_read(&self) -> u64 {
        self.stream.position()
    }
}

/// `BadLength` when a member declares more than the configured limit; checked before any
/// allocation, whatever the header claims.
pub(crate) fn check_member_size(size: u64, max_record_bytes: u64) -> Result<(), RecordError> {
    if size > max_record_bytes {
        return Err(RecordError::new(
            RejectKind::BadLength,
            format!(
                "member declares {size} bytes, more than the {max_record_bytes}-byte limit (max_record_bytes); skipped"
            ),
        ));
    }
    Ok(())
}

/// Drops leading `./` and `/` so that `tar -C dir -cf x.tar .` archives get the same keys as
/// archives of the directory's contents.
pub(crate) fn normalize_member_name(name: &str) -> &str {
    let mut rest = name;
    loop {
        if let Some(stripped) = rest.strip_prefix("./") {
            rest = stripped;
        } else if let Some(stripped) = rest.strip_prefix('/') {
            rest = stripped;
        } else {
            return rest;
        }
    }
}

/// `path` without the last extension of its file name (`a.b/c.d.jpg` -> `a.b/c.d`); a leading
/// dot of the file name is not an extension (`dir/.x` stays).
pub(crate) fn strip_extension(path: &str) -> &str {
    let file_start = path.rfind('/').map_or(0, |slash| slash + 1);
    match path[file_start..].rfind('.') {
        Some(dot) if dot > 0 => &path[..file_start + dot],
        _ => path,
    }
}

/// The immediate parent directory of a member (`a/b/c.jpg` -> `b`), skipping empty and `.`
/// components; `None` at the top level.
fn parent_dir_name(path: &str) -> Option<&str> {
    let (dir, _file) = path.rsplit_once('/')?;
    dir.rsplit('/').find(|component| !component.is_empty() && *component != ".")
}

/// Where [`TarStream`] gets its bytes and how it passes over data it does not need.
pub(crate) trait TarSource: Read {
    /// Passes over up to `n` bytes; returns how many there were (fewer only at end of stream).
    fn skip_bytes(&mut self, n: u64) -> io::Result<u64>;

    /// The next `n` bytes (fewer only at the end of the stream) as a view of memory the source
    /// already holds, when it holds them (a mapped shard); `None`: read them into a buffer.
    fn view(&mut self, _n: usize) -> Option<io::Result<Bytes>> {
        None
    }
}

/// A plain `Read`, buffered: what the streaming readers use.
pub(crate) fn buffered_source<R: Read>(stream: R) -> Sequential<BufReader<R>> {
    Sequential(BufReader::with_capacity(STREAM_BUFFER_BYTES, stream))
}

impl TarSource for MappedRegion {
    fn skip_bytes(&mut self, n: u64) -> io::Result<u64> {
        Ok(self.skip(n))
    }

    fn view(&mut self, n: usize) -> Option<io::Result<Bytes>> {
        Some(MappedRegion::view(self, n))
    }
}

/// A plain sequential stream: skipped data is read through a small buffer and dropped.
pub(crate) struct Sequential<R>(pub R);

impl<R: Read> Read for Sequential<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R: Read> TarSource for Sequential<R> {
    fn skip_bytes(&mut self, n: u64) -> io::Result<u64> {
        io::copy(&mut (&mut self.0).take(n), &mut io::sink())
    }
}

/// A file whose skipped data is seeked over ([`list_members`]).
struct Seeking {
    file: File,
    file_bytes: u64,
    position: u64,
}

impl Read for Seeking {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.position += n as u64;
        Ok(n)
    }
}

impl TarSource for Seeking {
    fn skip_bytes(&mut self, n: u64) -> io::Result<u64> {
        // Seeking past the end succeeds silently; clamp so a cut file reports as one.
        let present = self.file_bytes.saturating_sub(self.position).min(n);
        let delta = i64::try_from(present)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "seek distance overflows i64"))?;
        self.file.seek(SeekFrom::Current(delta))?;
        self.position += present;
        Ok(present)
    }
}

/// One member as its headers describe it (extension members already applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemberHeader {
    /// Raw name bytes: GNU long name, else pax `path`, else the header's (ustar prefix applied).
    pub name: Vec<u8>,
    pub entry_type: tar::EntryType,
    /// Data bytes in the archive (pax `size` applied).
    pub size: u64,
    /// Offset of the member's own header (after its extension members), as `raw_header_position`.
    pub header_offset: u64,
    pub data_offset: u64,
}

impl MemberHeader {
    /// A regular file, as `EntryType::is_file`; a name ending in `/` is an old-style directory.
    pub fn is_file(&self) -> bool {
        self.entry_type.is_file() && !self.name.ends_with(b"/")
    }

    pub fn name_lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.name)
    }
}

/// The member whose data the stream is in (or just past): for truncation messages.
struct CurrentMember {
    name: String,
    size: u64,
    header_offset: u64,
    data_offset: u64,
}

/// Sequential tar framing over a [`TarSource`]: [`TarStream::next_member`] then, optionally,
/// [`TarStream::read_data`] for that member; unread data is skipped by the next `next_member`.
/// After the first error it returns `Ok(None)`: the place in the stream is lost.
pub(crate) struct TarStream<S> {
    source: S,
    /// Bytes consumed from `source` (read or skipped).
    position: u64,
    /// Where the next header starts: the current member's data end, rounded up to a block.
    next_header: u64,
    current: Option<CurrentMember>,
    done: bool,
    header: tar::Header,
}

impl<S: TarSource> TarStream<S> {
    pub fn new(source: S) -> Self {
        TarStream { source, position: 0, next_header: 0, current: None, done: false, header: tar::Header::new_old() }
    }

    /// Bytes consumed from the stream so far.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The next member (of any type), `Ok(None)` at the end of the archive.
    pub fn next_member(&mut self) -> Result<Option<MemberHeader>, RecordError> {
        if self.done {
            return Ok(None);
        }
        let result = self.next_member_inner();
        if !matches!(result, Ok(Some(_))) {
            self.done = true;
        }
        result
    }

    fn next_member_inner(&mut self) -> Result<Option<MemberHeader>, RecordError> {
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link_seen = false;
        let mut pax: Option<Vec<u8>> = None;
        loop {
            self.skip_to_next_header()?;
            let header_offset = self.position;
            let pending = long_name.is_some() || long_link_seen || pax.is_some();
            let filled = read_block(&mut self.source, self.header.as_mut_bytes(), &mut self.position)?;
            if filled == 0 {
                if pending {
                    return Err(dangling_extension(header_offset));
                }
                return Ok(None);
            }
            let block = &self.header.as_bytes()[..filled];
            if filled < BLOCK_BYTES as usize && block.iter().all(|&byte| byte == 0) {
                // Cut inside the end-of-archive blocks (a header never starts with NUL).
                if pending {
                    return Err(dangling_extension(header_offset));
                }
                return Ok(None);
            }
            if filled < BLOCK_BYTES as usize {
                return Err(RecordError::new(
                    RejectKind::Truncated,
                    format!("archive ends inside the header at byte {header_offset}: {filled} of 512 bytes present"),
                )
                .with_offset(header_offset));
            }
            if self.header.as_bytes().iter().all(|&byte| byte == 0) {
                return self.end_of_archive(header_offset, pending);
            }
            self.verify_checksum(header_offset)?;

            let entry_type = self.header.entry_type();
            let declared_size = self.header.entry_size().map_err(|error| {
                RecordError::new(RejectKind::Malformed, format!("header at byte {header_offset}: {error}"))
                    .with_offset(header_offset)
            })?;
            let mut data_offset = header_offset + BLOCK_BYTES;
            let recognized = self.header.as_gnu().is_some() || self.header.as_ustar().is_some();
            let is_extension = recognized
                && (entry_type.is_gnu_longname()
                    || entry_type.is_gnu_longlink()
                    || entry_type.is_pax_local_extensions());
            if is_extension {
                // Same rules as the tar crate: one of each kind per member.
                let duplicate = (entry_type.is_gnu_longname() && long_name.is_some())
                    || (entry_type.is_gnu_longlink() && long_link_seen)
                    || (entry_type.is_pax_local_extensions() && pax.is_some());
                if duplicate {
                    return Err(RecordError::new(
                        RejectKind::Malformed,
                        format!(
                            "header at byte {header_offset}: two '{}' extension members describe the same member",
                            char::from(entry_type.as_byte())
                        ),
                    )
                    .with_offset(header_offset));
                }
                if declared_size > MAX_EXTENSION_BYTES {
                    return Err(RecordError::new(
                        RejectKind::BadLength,
                        format!(
                            "extension member ('{}') at byte {header_offset} declares {declared_size} bytes, more than the {MAX_EXTENSION_BYTES}-byte limit",
                            char::from(entry_type.as_byte())
                        ),
                    )
                    .with_offset(header_offset));
                }
                // Named by its own header (`././@LongLink`, `PaxHeaders/...`) for messages.
                let own_name = self.header.path_bytes().into_owned();
                let member = self.begin_member(own_name, entry_type, declared_size, header_offset, data_offset)?;
                let data = self.read_data(&member)?;
                if entry_type.is_gnu_longname() {
                    long_name = Some(data.to_vec());
                } else if entry_type.is_gnu_longlink() {
                    long_link_seen = true;
                } else {
                    pax = Some(data.to_vec());
                }
                continue;
            }

            if entry_type.is_gnu_sparse() {
                data_offset = self.skip_sparse_extension_blocks(header_offset)?;
            }
            let is_extension_type = entry_type.is_gnu_longname()
                || entry_type.is_gnu_longlink()
                || entry_type.is_pax_local_extensions()
                || entry_type.is_pax_global_extensions();
            let mut size = declared_size;
            if !is_extension_type {
                if let Some(pax_size) = pax.as_deref().and_then(pax_size) {
                    size = pax_size;
                }
            }
            let name = match long_name {
                Some(mut bytes) => {
                    // The GNU long name is NUL-terminated; the tar crate drops one NUL.
                    if bytes.last() == Some(&0) {
                        bytes.pop();
                    }
                    bytes
                }
                None => match pax.as_deref().and_then(pax_path) {
                    Some(path) => path.to_vec(),
                    None => self.header.path_bytes().into_owned(),
                },
            };
            return self.begin_member(name, entry_type, size, header_offset, data_offset).map(Some);
        }
    }

    /// Records `name` as the current member and where its data ends.
    fn begin_member(
        &mut self,
        name: Vec<u8>,
        entry_type: tar::EntryType,
        size: u64,
        header_offset: u64,
        data_offset: u64,
    ) -> Result<MemberHeader, RecordError> {
        let next_header = size
            .checked_add(BLOCK_BYTES - 1)
            .map(|padded| padded & !(BLOCK_BYTES - 1))
            .and_then(|padded| data_offset.checked_add(padded))
            .ok_or_else(|| {
                RecordError::new(
                    RejectKind::Malformed,
                    format!("header at byte {header_offset}: size {size} overflows the archive offset"),
                )
                .with_offset(header_offset)
            })?;
        self.next_header = next_header;
        let member = MemberHeader { name, entry_type, size, header_offset, data_offset };
        self.current = Some(CurrentMember { name: member.name_lossy().into_owned(), size, header_offset, data_offset });
        Ok(member)
    }

    /// Reads all data of `member`, which must be the member `next_member` just returned.
    /// The caller checks the size limit first; the buffer is allocated at the declared size.
    pub fn read_data(&mut self, member: &MemberHeader) -> Result<Bytes, RecordError> {
        if self.done || self.position != member.data_offset {
            return Err(RecordError::new(
                RejectKind::Malformed,
                format!("data of member {} requested out of sequence at byte {}", member.name_lossy(), self.position),
            ));
        }
        let result = self.read_data_inner(member);
        if result.is_err() {
            self.done = true;
        }
        result
    }

    fn read_data_inner(&mut self, member: &MemberHeader) -> Result<Bytes, RecordError> {
        let capacity = usize::try_from(member.size).map_err(|_| {
            RecordError::new(
                RejectKind::BadLength,
                format!("member declares {} bytes, more than this platform can address", member.size),
            )
            .with_offset(member.header_offset)
        })?;
        let bytes = match self.source.view(capacity) {
            Some(view) => view.map_err(|error| stream_failure(error, self.position))?,
            None => {
                let mut bytes = Vec::with_capacity(capacity);
                let read = (&mut self.source).take(member.size).read_to_end(&mut bytes);
                if let Err(error) = read {
                    self.position += bytes.len() as u64;
                    return Err(stream_failure(error, self.position));
                }
                Bytes::from(bytes)
            }
        };
        self.position += bytes.len() as u64;
        let present = bytes.len() as u64;
        if present < member.size {
            return Err(RecordError::new(
                RejectKind::Truncated,
                format!("member {} declares {} bytes, only {present} present", member.name_lossy(), member.size),
            )
            .with_offset(member.header_offset));
        }
        Ok(bytes)
    }

    /// Skips the rest of the current member's data and padding.
    fn skip_to_next_header(&mut self) -> Result<(), RecordError> {
        let Some(wanted) = self.next_header.checked_sub(self.position).filter(|&wanted| wanted > 0) else {
            return Ok(());
        };
        let skipped = self.source.skip_bytes(wanted).map_err(|error| stream_failure(error, self.position))?;
        self.position += skipped;
        if skipped == wanted {
            return Ok(());
        }
        let end = self.position;
        Err(match &self.current {
            Some(current) if end < current.data_offset.saturating_add(current.size) => RecordError::new(
                RejectKind::Truncated,
                format!(
                    "member {} declares {} bytes, only {} present",
                    current.name,
                    current.size,
                    end - current.data_offset
                ),
            )
            .with_offset(current.header_offset)
            .named(current.name.clone()),
            Some(current) => RecordError::new(
                RejectKind::Truncated,
                format!("archive ends at byte {end}, inside the padding after member {}", current.name),
            )
            .with_offset(end)
            .named(current.name.clone()),
            None => RecordError::new(RejectKind::Truncated, format!("archive ends at byte {end}")).with_offset(end),
        })
    }

    /// GNU sparse members may be followed by extension blocks of sparse maps before the data.
    fn skip_sparse_extension_blocks(&mut self, header_offset: u64) -> Result<u64, RecordError> {
        let Some(gnu) = self.header.as_gnu() else {
            return Err(RecordError::new(
                RejectKind::Malformed,
                format!("header at byte {header_offset}: sparse member without a GNU header"),
            )
            .with_offset(header_offset));
        };
        let mut extended = gnu.isextended[0] != 0;
        let mut block = [0u8; BLOCK_BYTES as usize];
        while extended {
            let block_offset = self.position;
            let filled = read_block(&mut self.source, &mut block, &mut self.position)?;
            if filled < block.len() {
                return Err(RecordError::new(
                    RejectKind::Truncated,
                    format!(
                        "archive ends inside a sparse map block at byte {block_offset}: {filled} of 512 bytes present"
                    ),
                )
                .with_offset(block_offset));
            }
            // `isextended` of a GNU extended sparse header: after 21 entries of 24 bytes.
            extended = block[504] != 0;
        }
        Ok(self.position)
    }

    /// A zero block ends the archive; the block after it must be zero too (or absent). A lone
    /// zero block followed by a header means a size field lied and the framing landed in data.
    fn end_of_archive(&mut self, header_offset: u64, pending: bool) -> Result<Option<MemberHeader>, RecordError> {
        let mut block = [0u8; BLOCK_BYTES as usize];
        let filled = read_block(&mut self.source, &mut block, &mut self.position)?;
        if filled == block.len() && block.iter().any(|&byte| byte != 0) {
            return Err(RecordError::new(
                RejectKind::Malformed,
                format!(
                    "a lone zero block at byte {header_offset} is followed by a non-zero block: a member's size field is probably wrong"
                ),
            )
            .with_offset(header_offset));
        }
        if pending {
            return Err(dangling_extension(header_offset));
        }
        Ok(None)
    }

    fn verify_checksum(&self, header_offset: u64) -> Result<(), RecordError> {
        // A checksum field that is not even a number fails verification like a wrong one:
        // either way the block is not a header (typically data, after a lying size field).
        let stored = self.header.cksum().map_err(|error| {
            RecordError::new(RejectKind::BadChecksum, format!("header at byte {header_offset}: {error}"))
                .with_offset(header_offset)
        })?;
        // The checksum field itself counts as eight spaces. Old writers summed signed bytes;
        // GNU tar accepts both, so do we.
        let (mut unsigned, mut signed) = (0u32, 0i32);
        for (position, &byte) in self.header.as_bytes().iter().enumerate() {
            let byte = if (148..156).contains(&position) { b' ' } else { byte };
            unsigned += u32::from(byte);
            signed += i32::from(byte as i8);
        }
        if stored != unsigned && i64::from(stored) != i64::from(signed) {
            return Err(RecordError::new(
                RejectKind::BadChecksum,
                format!(
                    "header at byte {header_offset}: checksum {stored} != computed {unsigned} (corrupt header, or the previous member's size is wrong)"
                ),
            )
            .with_offset(header_offset));
        }
        Ok(())
    }
}

fn dangling_extension(offset: u64) -> RecordError {
    RecordError::new(
        RejectKind::Truncated,
        format!("archive ends at byte {offset} after an extension member, before the member it describes"),
    )
    .with_offset(offset)
}

/// An I/O error of the underlying stream (a decompressor's EOF error counts as truncation).
fn stream_failure(error: io::Error, position: u64) -> RecordError {
    let kind = match error.kind() {
        io::ErrorKind::UnexpectedEof => RejectKind::Truncated,
        _ => RejectKind::ShardUnreadable,
    };
    RecordError::new(kind, format!("reading the stream after byte {position}: {error}")).with_offset(position)
}

/// Fills `block` as far as the stream allows; fewer than 512 bytes only at its end.
fn read_block<R: Read>(source: &mut R, block: &mut [u8], position: &mut u64) -> Result<usize, RecordError> {
    let mut filled = 0;
    while filled < block.len() {
        match source.read(&mut block[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => {
                *position += filled as u64;
                return Err(stream_failure(error, *position));
            }
        }
    }
    *position += filled as u64;
    Ok(filled)
}

/// The pax `size` record, as the tar crate reads it: the first one, stopping at a malformed record.
fn pax_size(pax: &[u8]) -> Option<u64> {
    for extension in tar::PaxExtensions::new(pax) {
        let extension = extension.ok()?;
        if extension.key_bytes() == b"size" {
            return std::str::from_utf8(extension.value_bytes()).ok()?.parse().ok();
        }
    }
    None
}

/// The pax `path` record: the first well-formed one.
fn pax_path(pax: &[u8]) -> Option<&[u8]> {
    tar::PaxExtensions::new(pax)
        .filter_map(Result::ok)
        .find(|extension| extension.key_bytes() == b"path")
        .map(|extension| extension.value_bytes())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Header formats the test archives are built with.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Format {
        Gnu,
        Ustar,
    }

    /// An in-memory tar built with `tar::Builder`, remembering where each member group starts.
    pub(crate) struct TestTar {
        builder: tar::Builder<Vec<u8>>,
        format: Format,
        /// Offset where each appended member group (extension members included) starts.
        pub group_starts: Vec<u64>,
    }

    impl TestTar {
        pub(crate) fn new(format: Format) -> Self {
            TestTar { builder: tar::Builder::new(Vec::new()), format, group_starts: Vec::new() }
        }

        fn header(&self, entry_type: tar::EntryType, size: u64) -> tar::Header {
            let mut header = match self.format {
                Format::Gnu => tar::Header::new_gnu(),
                Format::Ustar => tar::Header::new_ustar(),
            };
            header.set_entry_type(entry_type);
            header.set_size(size);
            header.set_mode(0o644);
            header
        }

        pub(crate) fn file(mut self, name: &str, data: &[u8]) -> Self {
            self.group_starts.push(self.builder.get_ref().len() as u64);
            let mut header = self.header(tar::EntryType::Regular, data.len() as u64);
            self.builder.append_data(&mut header, name, data).expect("appending to a Vec");
            self
        }

        /// A file whose header name field holds `name` verbatim (no normalization, any bytes).
        pub(crate) fn raw_file(mut self, name: &[u8], data: &[u8]) -> Self {
            self.group_starts.push(self.builder.get_ref().len() as u64);
            let mut header = self.header(tar::EntryType::Regular, data.len() as u64);
            header.as_old_mut().name[..name.len()].copy_from_slice(name);
            header.set_cksum();
            self.builder.append(&header, data).expect("appending to a Vec");
            self
        }

        pub(crate) fn dir(mut self, name: &str) -> Self {
            self.group_starts.push(self.builder.get_ref().len() as u64);
            let mut header = self.header(tar::EntryType::Directory, 0);
            self.builder.append_data(&mut header, name, io::empty()).expect("appending to a Vec");
            self
        }

        pub(crate) fn symlink(mut self, name: &str, target: &str) -> Self {
            self.group_starts.push(self.builder.get_ref().len() as u64);
            let mut header = self.header(tar::EntryType::Symlink, 0);
            self.builder.append_link(&mut header, name, target).expect("appending to a Vec");
            self
        }

        /// A pax `x` member with `records`, then a file whose header name is `header_name`.
        pub(crate) fn pax_file(mut self, records: &[(&str, &str)], header_name: &str, data: &[u8]) -> Self {
            self.group_starts.push(self.builder.get_ref().len() as u64);
            let mut pax = Vec::new();
            for (key, value) in records {
                // "<len> <key>=<value>\n" where len counts the whole record, itself included.
                let body = format!(" {key}={value}\n");
                let mut len = body.len() + 1;
                while format!("{len}{body}").len() != len {
                    len += 1;
                }
                pax.extend_from_slice(format!("{len}{body}").as_bytes());
            }
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(tar::EntryType::XHeader);
            header.set_size(pax.len() as u64);
            header.set_path("PaxHeaders/x").expect("short path");
            header.set_cksum();
            self.builder.append(&header, pax.as_slice()).expect("appending to a Vec");
            let mut header = self.header(tar::EntryType::Regular, data.len() as u64);
            header.set_path(header_name).expect("short path");
            header.set_cksum();
            self.builder.append(&header, data).expect("appending to a Vec");
            self
        }

        /// A pax global header (`g`): passes through as a non-file member.
        pub(crate) fn pax_global(mut self) -> Self {
            self.group_starts.push(self.builder.get_ref().len() as u64);
            let data = b"16 comment=abc\n";
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(tar::EntryType::XGlobalHeader);
            header.set_size(data.len() as u64);
            header.set_path("pax_global_header").expect("short path");
            header.set_cksum();
            self.builder.append(&header, &data[..]).expect("appending to a Vec");
            self
        }

        /// The archive with its two end-of-archive blocks.
        pub(crate) fn finish(self) -> Vec<u8> {
            self.builder.into_inner().expect("finishing a Vec")
        }

        /// The archive without end-of-archive blocks (tolerated: streams are often cut there).
        pub(crate) fn unterminated(self) -> Vec<u8> {
            let mut bytes = self.finish();
            bytes.truncate(bytes.len() - 1024);
            bytes
        }
    }

    /// Overwrites the size field of the header at `header_offset` and fixes its checksum.
    pub(crate) fn patch_size(tar_bytes: &mut [u8], header_offset: usize, size: u64) {
        let block = &mut tar_bytes[header_offset..header_offset + 512];
        let header = tar::Header::from_byte_slice(block);
        let mut header = header.clone();
        header.set_size(size);
        header.set_cksum();
        block.copy_from_slice(header.as_bytes());
    }

    /// (header offset, data offset, size, name, is file) of every member, by the tar crate.
    pub(crate) fn crate_members(tar_bytes: &[u8]) -> Vec<(u64, u64, u64, Vec<u8>, bool)> {
        let mut archive = tar::Archive::new(tar_bytes);
        let mut members = Vec::new();
        for entry in archive.entries().expect("entries") {
            let entry = entry.expect("valid archive");
            members.push((
                entry.raw_header_position(),
                entry.raw_file_position(),
                entry.size(),
                entry.path_bytes().into_owned(),
                entry.header().entry_type().is_file(),
            ));
        }
        members
    }

    pub(crate) fn read_all(mut reader: Box<dyn ShardReader>) -> Vec<Result<RawRecord, RecordError>> {
        let mut results = Vec::new();
        // A reader must end: the bound catches one that loops after an error.
        while let Some(result) = reader.next_record() {
            results.push(result);
            assert!(results.len() < 100_000, "reader does not end");
        }
        results
    }

    pub(crate) fn image(record: &RawRecord) -> (&str, Option<&str>, &[u8], &RawLabel) {
        match &record.payload {
            RawPayload::Image { key, path, bytes, label } => (key, path.as_deref(), bytes, label),
            RawPayload::TfRecord { .. } => panic!("tar readers yield images"),
        }
    }

    fn flat(bytes: Vec<u8>) -> Vec<Result<RawRecord, RecordError>> {
        read_all(flat_tar_reader(io::Cursor::new(bytes), "shard-0".into(), &ReaderConfig::default()))
    }

    fn imagenet(bytes: Vec<u8>, config: &ReaderConfig) -> Vec<Result<RawRecord, RecordError>> {
        read_all(imagenet_inner_reader(io::Cursor::new(bytes), "n01440764".into(), config))
    }

    fn data(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    pub(crate) fn ok(result: &Result<RawRecord, RecordError>) -> &RawRecord {
        match result {
            Ok(record) => record,
            Err(error) => panic!("expected a record, got {error}"),
        }
    }

    pub(crate) fn err(result: &Result<RawRecord, RecordError>) -> &RecordError {
        match result {
            Ok(record) => panic!("expected an error, got record {}", record.index),
            Err(error) => error,
        }
    }

    #[test]
    fn imagenet_keys_labels_paths_and_offsets() {
        for format in [Format::Gnu, Format::Ustar] {
            let bytes = TestTar::new(format)
                .file("n01440764_10026.JPEG", &data(1000, 1))
                .dir("somedir/")
                .symlink("link.JPEG", "n01440764_10026.JPEG")
                .file("sub/n01440764_7.tar.JPEG", &data(10, 2))
                .pax_global()
                .file("n01440764_8", &data(0, 3))
                .finish();
            let expected_offsets: Vec<u64> =
                crate_members(&bytes).into_iter().filter(|member| member.4).map(|member| member.0).collect();
            let results = imagenet(bytes, &ReaderConfig::default());
            assert_eq!(results.len(), 3, "{format:?}");
            let keys: Vec<_> = results.iter().map(|result| image(ok(result)).0.to_owned()).collect();
            assert_eq!(keys, ["n01440764/n01440764_10026", "n01440764/n01440764_7.tar", "n01440764/n01440764_8"]);
            let record = ok(&results[1]);
            let (_, path, bytes, label) = image(record);
            assert_eq!(path, Some("sub/n01440764_7.tar.JPEG"));
            assert_eq!(bytes, data(10, 2).as_slice());
            assert_eq!(label, &RawLabel::ClassName("n01440764".into()));
            let indices: Vec<_> = results.iter().map(|result| ok(result).index).collect();
            assert_eq!(indices, [0, 1, 2]);
            let offsets: Vec<_> = results.iter().map(|result| ok(result).offset).collect();
            assert_eq!(offsets, expected_offsets);
        }
    }

    #[test]
    fn flat_tar_keys_and_parent_directory_labels() {
        let bytes = TestTar::new(Format::Gnu)
            .dir("cls_a/")
            .file("cls_a/img1.jpg", b"a")
            .file("cls_b/sub/img2.v2.png", b"b")
            .file("top.jpg", b"c")
            .raw_file(b"./cls_c/x.jpeg", b"d")
            .file("noext", b"e")
            .finish();
        let results = flat(bytes);
        let got: Vec<_> = results
            .iter()
            .map(|result| {
                let (key, path, _, label) = image(ok(result));
                (key.to_owned(), path.map(str::to_owned), label.clone())
            })
            .collect();
        let class = |name: &str| RawLabel::ClassName(name.into());
        assert_eq!(
            got,
            [
                ("shard-0/cls_a/img1".to_owned(), Some("cls_a/img1.jpg".to_owned()), class("cls_a")),
                ("shard-0/cls_b/sub/img2.v2".to_owned(), Some("cls_b/sub/img2.v2.png".to_owned()), class("sub")),
                ("shard-0/top".to_owned(), Some("top.jpg".to_owned()), RawLabel::Missing),
                ("shard-0/cls_c/x".to_owned(), Some("./cls_c/x.jpeg".to_owned()), class("cls_c")),
                ("shard-0/noext".to_owned(), Some("noext".to_owned()), RawLabel::Missing),
            ]
        );
    }

    #[test]
    fn long_names_gnu_ustar_prefix_and_pax_path() {
        let long_dir = "d".repeat(120);
        let long_file = format!("{}.jpg", "f".repeat(150));
        let nested = format!("{long_dir}/img.jpg");
        for format in [Format::Gnu, Format::Ustar] {
            let bytes = TestTar::new(format)
                .file(&long_file, b"1")
                .file(&nested, b"2")
                .pax_file(&[("mtime", "1.5"), ("path", "paxcls/from_pax.png")], "short.png", b"3")
                .file("after.jpg", b"4")
                .finish();
            let expected: Vec<Vec<u8>> = crate_members(&bytes).into_iter().map(|member| member.3).collect();
            let results = flat(bytes);
            let paths: Vec<_> = results.iter().map(|result| image(ok(result)).1.map(str::to_owned)).collect();
            assert_eq!(
                paths,
                [
                    Some(long_file.clone()),
                    Some(nested.clone()),
                    Some("paxcls/from_pax.png".into()),
                    Some("after.jpg".into())
                ],
                "{format:?}"
            );
            let expected: Vec<Option<String>> =
                expected.into_iter().map(|name| Some(String::from_utf8(name).expect("utf-8"))).collect();
            assert_eq!(paths, expected, "agrees with the tar crate");
            let (key, _, _, label) = image(ok(&results[1]));
            assert_eq!(key, format!("shard-0/{long_dir}/img"));
            assert_eq!(label, &RawLabel::ClassName(long_dir.clone()));
            assert_eq!(image(ok(&results[2])).3, &RawLabel::ClassName("paxcls".into()));
        }
    }

    #[test]
    fn pax_size_overrides_the_header_size() {
        let mut bytes =
            TestTar::new(Format::Ustar).pax_file(&[("size", "5")], "a/x.jpg", b"hello").file("a/y.jpg", b"z").finish();
        // The header now claims 0 bytes; the pax record says 5, which is the truth.
        patch_size(&mut bytes, 1024, 0);
        let results = flat(bytes);
        assert_eq!(results.len(), 2);
        assert_eq!(image(ok(&results[0])).2, b"hello");
        assert_eq!(image(ok(&results[1])).2, b"z");
    }

    #[test]
    fn list_members_agrees_with_the_tar_crate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("outer.tar");
        let bytes = TestTar::new(Format::Gnu)
            .file("n01440764.tar", &data(3000, 1))
            .dir("x/")
            .file(&format!("{}.tar", "n".repeat(140)), &data(512, 2))
            .pax_file(&[("path", "n01443537.tar")], "short.tar", &data(7, 3))
            .finish();
        std::fs::write(&path, &bytes).expect("write");
        let listed = list_members(&path).expect("list");
        let expected: Vec<TarMember> = crate_members(&bytes)
            .into_iter()
            .filter(|member| member.4)
            .map(|(_, data_offset, size, name, _)| TarMember {
                name: String::from_utf8(name).expect("utf-8"),
                data_offset,
                size,
            })
            .collect();
        assert_eq!(listed, expected);
        assert_eq!(listed[2].name, "n01443537.tar");
        let start = usize::try_from(listed[0].data_offset).expect("small");
        assert_eq!(&bytes[start..start + 3000], data(3000, 1).as_slice());
    }

    #[test]
    fn list_members_keeps_a_member_cut_inside_its_data_and_rejects_other_damage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("outer.tar");
        let bytes = TestTar::new(Format::Gnu).file("a.tar", &data(600, 1)).file("b.tar", &data(3000, 2)).finish();
        // Cut inside b.tar's data: both listed; a reader of b.tar reports the cut.
        std::fs::write(&path, &bytes[..2048 + 100]).expect("write");
        let listed = list_members(&path).expect("list");
        assert_eq!(listed.iter().map(|member| member.name.as_str()).collect::<Vec<_>>(), ["a.tar", "b.tar"]);
        // Cut inside b.tar's header.
        std::fs::write(&path, &bytes[..1536 + 100]).expect("write");
        let error = list_members(&path).expect_err("cut header");
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        assert!(error.to_string().contains("byte 1536"), "{error}");
        // Corrupt header.
        let mut corrupt = bytes.clone();
        corrupt[1536 + 10] ^= 0x55;
        std::fs::write(&path, &corrupt).expect("write");
        let error = list_members(&path).expect_err("bad checksum");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(error.to_string().contains("at byte 1536"), "{error}");
    }

    #[test]
    fn unterminated_and_empty_archives_are_fine() {
        let bytes = TestTar::new(Format::Gnu).file("a/1.jpg", b"x").unterminated();
        let results = flat(bytes);
        assert_eq!(results.len(), 1);
        assert!(results[0].is_ok());
        assert!(flat(Vec::new()).is_empty());
    }

    /// Cutting the archive anywhere: records whose data is complete are yielded, in order;
    /// a cut at a member boundary ends silently (end blocks may be missing), any other cut
    /// yields exactly one `Truncated` error, last; nothing panics.
    #[test]
    fn truncation_at_every_offset() {
        for format in [Format::Gnu, Format::Ustar] {
            let tar = TestTar::new(format)
                .file("c/a.jpg", &data(1000, 1))
                .file(&format!("c/{}.jpg", "l".repeat(130)), &data(700, 2))
                .dir("c/d/")
                .pax_file(&[("path", "c/pax.jpg")], "c/p.jpg", &data(3000, 3))
                .file("c/empty.jpg", b"");
            let group_starts = tar.group_starts.clone();
            let bytes = tar.finish();
            let full = flat(bytes.clone());
            let data_ends: Vec<u64> =
                crate_members(&bytes).into_iter().filter(|member| member.4).map(|member| member.1 + member.2).collect();
            let end_blocks = bytes.len() as u64 - 1024;
            for cut in 0..bytes.len() {
                let cut_u64 = cut as u64;
                let results = flat(bytes[..cut].to_vec());
                let complete = data_ends.iter().filter(|&&end| end <= cut_u64).count();
                let clean = cut == 0 || group_starts.contains(&cut_u64) || cut_u64 >= end_blocks;
                let records: Vec<_> = results.iter().filter_map(|result| result.as_ref().ok()).collect();
                assert_eq!(records.len(), complete, "{format:?} cut at {cut}");
                for (record, expected) in records.iter().zip(&full) {
                    let expected = ok(expected);
                    assert_eq!(image(record), image(expected), "cut at {cut}");
                    assert_eq!((record.index, record.offset), (expected.index, expected.offset));
                }
                let errors: Vec<_> = results.iter().filter_map(|result| result.as_ref().err()).collect();
                if clean {
                    assert!(errors.is_empty(), "{format:?} cut at {cut}: {errors:?}");
                } else {
                    assert_eq!(errors.len(), 1, "{format:?} cut at {cut}: {errors:?}");
                    assert_eq!(errors[0].kind, RejectKind::Truncated, "cut at {cut}: {}", errors[0]);
                    assert!(results.last().is_some_and(Result::is_err), "the error comes last");
                }
            }
        }
    }

    #[test]
    fn truncated_member_names_declared_and_present_bytes() {
        let bytes = TestTar::new(Format::Gnu).file("c/a.jpg", &data(100, 1)).file("c/b.jpg", &data(2000, 2)).finish();
        let results = flat(bytes[..1024 + 512 + 300].to_vec());
        assert_eq!(results.len(), 2);
        ok(&results[0]);
        let error = err(&results[1]);
        assert_eq!(error.kind, RejectKind::Truncated);
        assert_eq!((error.index, error.offset), (Some(1), Some(1024)));
        assert_eq!(error.name.as_deref(), Some("c/b.jpg"));
        assert_eq!(error.reason, "member c/b.jpg declares 2000 bytes, only 300 present");
    }

    #[test]
    fn header_size_bigger_than_the_data_present() {
        let mut bytes =
            TestTar::new(Format::Gnu).file("c/a.jpg", &data(100, 1)).file("c/b.jpg", &data(100, 2)).unterminated();
        patch_size(&mut bytes, 1024, 5000);
        let results = flat(bytes);
        assert_eq!(results.len(), 2);
        assert_eq!(image(ok(&results[0])).2, data(100, 1).as_slice());
        let error = err(&results[1]);
        assert_eq!(error.kind, RejectKind::Truncated);
        assert_eq!(error.reason, "member c/b.jpg declares 5000 bytes, only 512 present");
    }

    #[test]
    fn header_size_smaller_than_the_data_lands_in_data() {
        let mut bytes =
            TestTar::new(Format::Ustar).file("c/a.jpg", &data(1500, 1)).file("c/b.jpg", &data(10, 2)).finish();
        patch_size(&mut bytes, 0, 100);
        let results = flat(bytes);
        assert_eq!(results.len(), 2, "{results:?}");
        // The lie cannot be seen until the next "header", which is image data.
        assert_eq!(image(ok(&results[0])).2.len(), 100);
        let error = err(&results[1]);
        assert_eq!(error.kind, RejectKind::BadChecksum);
        assert_eq!(error.offset, Some(1024));
        assert!(error.reason.starts_with("header at byte 1024: "), "{}", error.reason);
    }

    #[test]
    fn size_lie_landing_on_a_zero_block_is_malformed() {
        // Data with a zero block at 512..1024 followed by non-zero bytes.
        let mut payload = vec![7u8; 1536];
        payload[512..1024].fill(0);
        let mut bytes = TestTar::new(Format::Gnu).file("c/a.jpg", &payload).finish();
        patch_size(&mut bytes, 0, 10);
        let results = flat(bytes);
        assert_eq!(results.len(), 2);
        let error = err(&results[1]);
        assert_eq!(error.kind, RejectKind::Malformed);
        assert_eq!(error.offset, Some(1024));
    }

    #[test]
    fn over_limit_member_is_skipped_unread_and_the_next_one_read() {
        let config = ReaderConfig { max_record_bytes: 1000, ..Default::default() };
        let bytes = TestTar::new(Format::Gnu)
            .file("a.JPEG", &data(1000, 1))
            .file("b.JPEG", &data(5000, 2))
            .file("c.JPEG", &data(10, 3))
            .finish();
        let results = imagenet(bytes.clone(), &config);
        assert_eq!(results.len(), 3);
        ok(&results[0]);
        let error = err(&results[1]);
        assert_eq!(error.kind, RejectKind::BadLength);
        assert_eq!((error.index, error.offset, error.name.as_deref()), (Some(1), Some(1536), Some("b.JPEG")));
        assert!(error.reason.contains("5000 bytes") && error.reason.contains("1000-byte limit"), "{}", error.reason);
        let record = ok(&results[2]);
        assert_eq!((record.index, image(record).2), (2, data(10, 3).as_slice()));

        // A member claiming 1 TB is rejected without allocating; the stream ends inside its
        // data, which ends the shard without a second reject for the same record.
        let mut huge = bytes;
        patch_size(&mut huge, 1536, 1 << 40);
        let results = imagenet(huge, &config);
        assert_eq!(results.len(), 2);
        let error = err(&results[1]);
        assert_eq!((error.kind, error.index), (RejectKind::BadLength, Some(1)));
        assert!(error.reason.contains("1099511627776 bytes"), "{}", error.reason);
    }

    #[test]
    fn corrupt_first_header_is_a_checksum_error() {
        let mut bytes = TestTar::new(Format::Gnu).file("a.JPEG", b"x").finish();
        bytes[3] ^= 1;
        let results = imagenet(bytes, &ReaderConfig::default());
        assert_eq!(results.len(), 1);
        let error = err(&results[0]);
        assert_eq!((error.kind, error.offset, error.index), (RejectKind::BadChecksum, Some(0), Some(0)));
    }

    #[test]
    fn unparsable_size_field_is_malformed() {
        let mut bytes = TestTar::new(Format::Gnu).file("a.JPEG", b"x").finish();
        bytes[124..136].copy_from_slice(b"99999999999\0");
        let header = tar::Header::from_byte_slice(&bytes[..512]).clone();
        let mut header = header;
        header.set_cksum();
        bytes[..512].copy_from_slice(header.as_bytes());
        let results = imagenet(bytes, &ReaderConfig::default());
        assert_eq!(results.len(), 1);
        assert_eq!(err(&results[0]).kind, RejectKind::Malformed);
    }

    #[test]
    fn oversized_long_name_member_is_rejected_without_reading_it() {
        let mut bytes = TestTar::new(Format::Gnu).file(&"n".repeat(200), b"x").finish();
        // The first member is the GNU `L` long-name member.
        patch_size(&mut bytes, 0, MAX_EXTENSION_BYTES + 1);
        let results = flat(bytes);
        assert_eq!(results.len(), 1);
        let error = err(&results[0]);
        assert_eq!((error.kind, error.offset), (RejectKind::BadLength, Some(0)));
    }

    #[test]
    fn non_utf8_member_name_is_rejected_and_reading_goes_on() {
        let mut header = tar::Header::new_gnu();
        header.as_gnu_mut().expect("gnu").name[..6].copy_from_slice(b"c/\xff.jp");
        header.set_size(1);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        let mut builder = tar::Builder::new(Vec::new());
        builder.append(&header, &b"x"[..]).expect("append");
        let mut header = tar::Header::new_gnu();
        header.set_size(1);
        builder.append_data(&mut header, "c/ok.jpg", &b"y"[..]).expect("append");
        let results = flat(builder.into_inner().expect("finish"));
        assert_eq!(results.len(), 2);
        let error = err(&results[0]);
        assert_eq!((error.kind, error.index), (RejectKind::Malformed, Some(0)));
        assert_eq!(image(ok(&results[1])).0, "shard-0/c/ok");
    }

    /// A stream that fails (a disk error, a corrupt compressed stream) after `good` bytes.
    struct Failing {
        bytes: io::Cursor<Vec<u8>>,
        good: u64,
        kind: io::ErrorKind,
    }

    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let left = self.good.saturating_sub(self.bytes.position());
            if left == 0 {
                return Err(io::Error::new(self.kind, "boom"));
            }
            let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            self.bytes.read(&mut buf[..n])
        }
    }

    #[test]
    fn stream_errors_end_the_shard_after_the_records_before() {
        let bytes = TestTar::new(Format::Gnu).file("c/a.jpg", &data(100, 1)).file("c/b.jpg", &data(5000, 2)).finish();
        for (kind, expected) in
            [(io::ErrorKind::Other, RejectKind::ShardUnreadable), (io::ErrorKind::UnexpectedEof, RejectKind::Truncated)]
        {
            let stream = Failing { bytes: io::Cursor::new(bytes.clone()), good: 3000, kind };
            let results = read_all(flat_tar_reader(stream, "s".into(), &ReaderConfig::default()));
            assert_eq!(results.len(), 2);
            ok(&results[0]);
            let error = err(&results[1]);
            assert_eq!(error.kind, expected);
            assert!(error.reason.contains("boom"), "{}", error.reason);
        }
    }

    #[test]
    fn bytes_read_counts_headers_data_and_end_blocks() {
        let bytes = TestTar::new(Format::Gnu).file("a.JPEG", &data(600, 1)).file("b.JPEG", &data(10, 2)).finish();
        let total = bytes.len() as u64;
        let mut reader = imagenet_inner_reader(io::Cursor::new(bytes), "n1".into(), &ReaderConfig::default());
        assert_eq!(reader.bytes_read(), 0);
        assert!(reader.next_record().is_some());
        assert_eq!(reader.bytes_read(), 512 + 600);
        assert!(reader.next_record().is_some());
        assert!(reader.next_record().is_none());
        assert_eq!(reader.bytes_read(), total);
        assert!(reader.next_record().is_none(), "stays ended");
    }

    #[test]
    fn name_helpers() {
        assert_eq!(strip_extension("a.b/c.d.jpg"), "a.b/c.d");
        assert_eq!(strip_extension("a.b/c"), "a.b/c");
        assert_eq!(strip_extension("dir/.hidden"), "dir/.hidden");
        assert_eq!(normalize_member_name("././/a/b"), "a/b");
        assert_eq!(parent_dir_name("a/b/c.jpg"), Some("b"));
        assert_eq!(parent_dir_name("a/./c.jpg"), Some("a"));
        assert_eq!(parent_dir_name("c.jpg"), None);
    }

    /// Strategy: a valid archive of files (some with long names, some behind pax headers),
    /// directories, symlinks, in GNU or ustar format.
    pub(crate) fn arb_tar() -> impl Strategy<Value = Vec<u8>> {
        let member = (0u8..6, 1usize..160, 0usize..1500, any::<u8>());
        (any::<bool>(), proptest::collection::vec(member, 0..6)).prop_map(|(gnu, members)| {
            let mut tar = TestTar::new(if gnu { Format::Gnu } else { Format::Ustar });
            for (number, (kind, name_len, size, seed)) in members.into_iter().enumerate() {
                let name = format!("c{}/{}{number}.jpg", seed % 3, "n".repeat(name_len));
                tar = match kind {
                    0 => tar.dir(&format!("d{number}/")),
                    1 => tar.symlink(&format!("s{number}"), "x"),
                    2 => tar.pax_file(&[("path", &name)], "p.jpg", &data(size, seed)),
                    _ => tar.file(&name, &data(size, seed)),
                };
            }
            tar.finish()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// On valid archives the stream framing agrees with the tar crate member by member.
        #[test]
        fn framing_agrees_with_the_tar_crate(bytes in arb_tar()) {
            let expected = crate_members(&bytes);
            let mut stream = TarStream::new(Sequential(bytes.as_slice()));
            let mut got = Vec::new();
            while let Some(member) = stream.next_member().expect("valid archive") {
                got.push((member.header_offset, member.data_offset, member.size, member.name.clone(), member.entry_type.is_file()));
            }
            prop_assert_eq!(got, expected);
            // Both end-of-archive blocks are read: the second one is checked.
            prop_assert_eq!(stream.position(), bytes.len() as u64);
        }

        /// A mapped shard (images as views of the map) reads exactly as the same bytes streamed,
        /// damage included: the same records, the same rejects, the same byte count.
        #[test]
        fn mapped_and_streamed_shards_read_the_same(
            bytes in arb_tar(),
            cut in any::<prop::sample::Index>(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..3),
        ) {
            let mut damaged = bytes;
            if !damaged.is_empty() {
                for (at, mask) in &flips {
                    let i = at.index(damaged.len());
                    damaged[i] ^= mask;
                }
            }
            damaged.truncate(cut.index(damaged.len() + 1));
            let mut file = tempfile::tempfile().expect("temp file");
            std::io::Write::write_all(&mut file, &damaged).expect("write");
            let region = MappedRegion::new(file, 0, damaged.len() as u64).expect("map");
            let config = ReaderConfig { max_record_bytes: 1000, ..Default::default() };
            let mut streamed = flat_tar_reader(io::Cursor::new(damaged), "s".into(), &config);
            let mut mapped = flat_tar_reader_of(region, "s".into(), &config);
            loop {
                let (a, b) = (streamed.next_record(), mapped.next_record());
                prop_assert_eq!(format!("{a:?}"), format!("{b:?}"));
                prop_assert_eq!(streamed.bytes_read(), mapped.bytes_read());
                if a.is_none() {
                    break;
                }
            }
        }

        /// Damage anywhere (a cut, flipped bytes): no panic, the reader ends, and every record
        /// whose headers and data lie wholly before the first damaged byte is yielded intact.
        /// A cut alone gives at most one error, last.
        #[test]
        fn damaged_archives_never_panic_and_keep_earlier_records(
            bytes in arb_tar(),
            cut in any::<prop::sample::Index>(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..4),
            truncate in any::<bool>(),
        ) {
            let full = flat(bytes.clone());
            prop_assert!(full.iter().all(Result::is_ok));
            let mut damaged = bytes;
            let mut first_damage = damaged.len();
            if truncate {
                first_damage = cut.index(damaged.len() + 1);
                damaged.truncate(first_damage);
            }
            let flipped = !flips.is_empty() && !damaged.is_empty();
            if !damaged.is_empty() {
                for (at, mask) in &flips {
                    let at = at.index(damaged.len());
                    damaged[at] ^= mask;
                    first_damage = first_damage.min(at);
                }
            }
            let results = flat(damaged);
            let intact = full
                .iter()
                .filter_map(|result| result.as_ref().ok())
                .take_while(|record| record.offset as usize + 512 + image(record).2.len() <= first_damage)
                .count();
            prop_assert!(results.len() >= intact);
            for (result, expected) in results.iter().zip(&full).take(intact) {
                let (Ok(record), Ok(expected)) = (result, expected) else {
                    return Err(TestCaseError::fail(format!("record before the damage at {first_damage} lost: {result:?}")));
                };
                prop_assert_eq!(image(record), image(expected));
                prop_assert_eq!((record.index, record.offset), (expected.index, expected.offset));
            }
            if !flipped {
                let errors = results.iter().filter(|result| result.is_err()).count();
                prop_assert!(errors <= 1);
                prop_assert!(errors == 0 || results.last().is_some_and(Result::is_err));
            }
        }
    }
}
