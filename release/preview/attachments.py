"""What an attachment really is: its bytes' type beside the type the sender declared, and
flags for what runs on a double click (executables, scripts, macro documents) and for
archives, which hide those. An archive's directory is read, never its contents: a zip
bomb costs the same as any zip."""

from __future__ import annotations

import io
import zipfile
from pathlib import PurePosixPath

from release.preview.headers import CONTROL
from release.preview.model import Attachment

# Leading bytes → type. Order matters: the first match wins.
SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"MZ", "application/x-msdownload"),
    (b"\x7fELF", "application/x-executable"),
    (b"\xcf\xfa\xed\xfe", "application/x-mach-binary"),
    (b"\xca\xfe\xba\xbe", "application/x-mach-binary"),
    (b"#!", "text/x-shellscript"),
    (b"%PDF-", "application/pdf"),
    (b"PK\x03\x04", "application/zip"),
    (b"PK\x05\x06", "application/zip"),
    (b"Rar!\x1a\x07", "application/vnd.rar"),
    (b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"),
    (b"\x1f\x8b", "application/gzip"),
    (b"BZh", "application/x-bzip2"),
    (b"\xfd7zXZ\x00", "application/x-xz"),
    (b"MSCF", "application/vnd.ms-cab-compressed"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "application/x-ole-storage"),  # old Office, MSI
    (b"{\\rtf", "application/rtf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"L\x00\x00\x00\x01\x14\x02\x00", "application/x-ms-shortcut"),
)
ISO_OFFSET, ISO_MAGIC = 0x8001, b"CD001"
# Extensions Windows or macOS run, or that carry macros or disk images that mount.
EXECUTABLE_EXTENSIONS = {
    *("exe", "com", "scr", "pif", "cpl", "msi", "msp", "msc", "dll", "sys", "bat", "cmd", "vbs", "vbe", "js"),
    *("jse", "wsf", "wsh", "ps1", "psm1", "hta", "lnk", "url", "reg", "jar", "app", "pkg", "dmg", "sh", "iso"),
    *("img", "vhd", "vhdx", "docm", "xlsm", "pptm", "dotm", "xlam", "one", "chm", "appx", "msix", "apk"),
    *("scf", "inf", "application", "gadget", "svg", "html", "htm", "shtml", "xhtml"),
}
EXECUTABLE_TYPES = {
    *("application/x-msdownload", "application/x-executable", "application/x-mach-binary"),
    *("text/x-shellscript", "application/x-ms-shortcut", "application/x-iso9660-image"),
}
ARCHIVE_EXTENSIONS = {"zip", "rar", "7z", "gz", "tgz", "bz2", "xz", "tar", "cab", "ace", "arj", "z", "lzh", "zipx"}
ARCHIVE_TYPES = {
    *("application/zip", "application/vnd.rar", "application/x-7z-compressed", "application/gzip"),
    *("application/x-bzip2", "application/x-xz", "application/vnd.ms-cab-compressed"),
}
# Office Open XML files are zips too: they are documents, listed by their extension.
OFFICE_EXTENSIONS = {"docx", "xlsx", "pptx", "odt", "ods", "odp", "epub", "docm", "xlsm", "pptm"}
# The member that makes a zip an Office Open XML file ("[Content_Types].xml") or an
# OpenDocument or EPUB one ("mimetype").
DOCUMENT_MARKERS = {"[Content_Types].xml", "mimetype"}
MEMBERS_SHOWN = 20
MEMBERS_READ = 2000
BOMB_RATIO = 100
BOMB_BYTES = 1 << 30


def sniff(data: bytes) -> str:
    """The type the bytes themselves say, or a guess between text and unknown binary."""
    for magic, kind in SIGNATURES:
        if data.startswith(magic):
            return kind
    if data[ISO_OFFSET : ISO_OFFSET + len(ISO_MAGIC)] == ISO_MAGIC:
        return "application/x-iso9660-image"
    head = data[:2048]
    if b"\x00" in head:
        return "application/octet-stream"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not merely a character cut at the end
            return "application/octet-stream"
    return "text/plain"


def extension(name: str) -> str:
    """The last extension, lower case ("" for none); trailing dots and spaces count for nothing,
    as on Windows."""
    return PurePosixPath(name.replace("\\", "/").rstrip(". ")).suffix.lower().lstrip(".")


def describe(index: int, name: str, declared: str, data: bytes) -> Attachment:
    """An :class:`Attachment` for one decoded part."""
    sniffed = sniff(data)
    ext = extension(name)
    members: tuple[str, ...] = ()
    warnings: list[str] = []
    document = False
    if sniffed == "application/zip":
        members, warnings, document = _zip_members(data)
    # A zip is a document where its name and its directory both say so: the name alone let
    # any archive, executables and all, pass unflagged as "invoice.docx".
    office = ext in OFFICE_EXTENSIONS and document
    if office:
        members, warnings = (), []
    executable = ext in EXECUTABLE_EXTENSIONS or sniffed in EXECUTABLE_TYPES
    archive = not office and (ext in ARCHIVE_EXTENSIONS or sniffed in ARCHIVE_TYPES)
    return Attachment(index, name, declared, sniffed, len(data), executable, archive, tuple(warnings), members)


def _zip_members(data: bytes) -> tuple[tuple[str, ...], list[str], bool]:
    """A zip's first member names, what its directory gives away, and whether it is an
    Office or OpenDocument file; never inflates."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()[:MEMBERS_READ]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError, NotImplementedError):
        return (), ["unreadable"], False
    warnings = []
    if any(i.flag_bits & 0x1 for i in infos):
        warnings.append("encrypted")
    if any(extension(i.filename) in EXECUTABLE_EXTENSIONS for i in infos):
        warnings.append("executable_inside")
    if any(extension(i.filename) in ARCHIVE_EXTENSIONS for i in infos):
        warnings.append("archive_inside")
    unpacked = sum(i.file_size for i in infos)
    if unpacked > BOMB_BYTES or unpacked > BOMB_RATIO * max(len(data), 1):
        warnings.append("bomb")
    # Names as the page shows them: a right-to-left override in "evil\u202efdp.exe" would
    # show "evilexe.pdf", so control and bidi characters go, as in every other name shown.
    names = tuple(CONTROL.sub("", i.filename)[:200] for i in infos[:MEMBERS_SHOWN])
    return names, warnings, any(i.filename in DOCUMENT_MARKERS for i in infos)
