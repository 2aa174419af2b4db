"""What an attachment really is: the type its bytes say beside the one declared, executables
behind double extensions and Windows' trailing dots, and what a zip's directory gives away
(executables, encryption, a bomb) without inflating anything."""

from __future__ import annotations

import io
import struct
import time
import zipfile

import pytest

from release.preview.attachments import describe, extension, sniff

PE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + bytes(50)
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"


def zipped(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """A real zip bomb: 200 MB of zeros, deflated (streamed, never held whole) to ~200 KB."""
    buffer = io.BytesIO()
    zeros = bytes(1 << 20)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("zeros.bin", "w", force_zip64=True) as member:
            for _ in range(200):
                member.write(zeros)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (PE, "application/x-msdownload"),
        (b"\x7fELF\x02\x01\x01" + bytes(20), "application/x-executable"),
        (b"\xcf\xfa\xed\xfe" + bytes(20), "application/x-mach-binary"),
        (b"#!/bin/sh\nrm -rf ~\n", "text/x-shellscript"),
        (PDF, "application/pdf"),
        (zipped({"a.txt": b"x"}), "application/zip"),
        (b"PK\x05\x06" + bytes(18), "application/zip"),  # an empty zip
        (b"Rar!\x1a\x07\x01\x00" + bytes(20), "application/vnd.rar"),
        (b"7z\xbc\xaf\x27\x1c\x00\x04" + bytes(20), "application/x-7z-compressed"),
        (b"\x1f\x8b\x08\x00" + bytes(20), "application/gzip"),
        (b"BZh91AY&SY", "application/x-bzip2"),
        (b"\xfd7zXZ\x00\x00", "application/x-xz"),
        (b"MSCF\x00\x00\x00\x00", "application/vnd.ms-cab-compressed"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(50), "application/x-ole-storage"),
        (b"{\\rtf1\\ansi x}", "application/rtf"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "image/png"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg"),
        (b"GIF89a\x01\x00", "image/gif"),
        (b"L\x00\x00\x00\x01\x14\x02\x00" + bytes(60), "application/x-ms-shortcut"),
        (bytes(0x8001) + b"CD001\x01", "application/x-iso9660-image"),
        (b"Hello, plain text\r\n", "text/plain"),
        ("Grüße, UTF-8 text".encode(), "text/plain"),
        (b"", "text/plain"),
        (("x" * 2047 + "é").encode(), "text/plain"),  # a character cut at the sniffing window
        (b"\x00\x01\x02\x03binary", "application/octet-stream"),
        (b"text then \xff\xfe\xfd bad bytes and more text after them", "application/octet-stream"),
    ],
)
def test_sniffed_type(data: bytes, kind: str) -> None:
    assert sniff(data) == kind


def test_iso_magic_must_be_at_its_offset() -> None:
    assert sniff(bytes(0x8000) + b"CD001") != "application/x-iso9660-image"


@pytest.mark.parametrize(
    ("name", "ext"),
    [
        ("invoice.pdf.exe", "exe"),
        ("a.exe.", "exe"),
        ("a.exe . . ", "exe"),
        ("A.EXE", "exe"),
        ("C:\\Users\\x\\payload.scr", "scr"),
        ("../../etc/evil.js", "js"),
        ("archive.tar.gz", "gz"),
        ("noext", ""),
        (".bashrc", ""),
        ("", ""),
    ],
)
def test_extension(name: str, ext: str) -> None:
    assert extension(name) == ext


@pytest.mark.parametrize(
    "name", ["invoice.pdf.exe", "a.exe.", "a.exe ", "Rechnung.PDF.js", "x.docm", "disk.iso", "a.lnk"]
)
def test_executable_by_name(name: str) -> None:
    found = describe(0, name, "application/octet-stream", b"hello")
    assert found.executable and found.risky


def test_declared_type_lying_about_an_executable() -> None:
    found = describe(3, "invoice.pdf", "application/pdf", PE)
    assert found.index == 3
    assert found.declared_type == "application/pdf"
    assert found.sniffed_type == "application/x-msdownload"
    assert found.executable and found.risky
    assert found.size == len(PE)


def test_honest_pdf_is_not_risky() -> None:
    found = describe(0, "invoice.pdf", "application/pdf", PDF)
    assert (found.sniffed_type, found.executable, found.archive, found.warnings) == (
        "application/pdf",
        False,
        False,
        (),
    )
    assert not found.risky


def test_zip_with_an_executable_member() -> None:
    found = describe(0, "docs.zip", "application/zip", zipped({"readme.txt": b"hi", "invoice.pdf.exe": PE}))
    assert found.archive
    assert "executable_inside" in found.warnings
    assert found.members == ("readme.txt", "invoice.pdf.exe")


def test_zip_inside_a_zip() -> None:
    found = describe(0, "a.zip", "application/zip", zipped({"inner.zip": zipped({"x.exe": PE})}))
    assert "archive_inside" in found.warnings
    assert "executable_inside" not in found.warnings  # not opened: directory only


def test_encrypted_zip() -> None:
    data = bytearray(zipped({"secret.pdf": PDF}, zipfile.ZIP_STORED))
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # general purpose flag
        at = data.find(signature)
        (flags,) = struct.unpack_from("<H", data, at + offset)
        struct.pack_into("<H", data, at + offset, flags | 0x1)
    found = describe(0, "secret.zip", "application/zip", bytes(data))
    assert "encrypted" in found.warnings


def test_zip_bomb_is_flagged_without_inflating(bomb: bytes) -> None:
    assert len(bomb) < 1_000_000
    started = time.process_time()
    found = describe(0, "x.zip", "application/zip", bomb)
    assert time.process_time() - started < 0.2
    assert "bomb" in found.warnings
    assert found.members == ("zeros.bin",)


def test_zip_claiming_a_huge_size_in_its_directory() -> None:
    data = bytearray(zipped({"a.bin": b"x" * 100}, zipfile.ZIP_STORED))
    at = data.find(b"PK\x01\x02")
    struct.pack_into("<I", data, at + 24, 0xFFFF0000)  # uncompressed size, as the directory says
    found = describe(0, "a.zip", "application/zip", bytes(data))
    assert "bomb" in found.warnings


def test_zip_with_many_members_lists_the_first() -> None:
    found = describe(0, "many.zip", "application/zip", zipped({f"f{i}.txt": b"" for i in range(3000)}))
    assert len(found.members) == 20 and found.members[0] == "f0.txt"


def test_member_names_lose_control_and_bidi_characters() -> None:
    found = describe(0, "a.zip", "application/zip", zipped({"invoice\u202efdp.exe": PE}))
    assert found.members == ("invoicefdp.exe",)
    assert "executable_inside" in found.warnings


@pytest.mark.parametrize(
    "data",
    [b"PK\x03\x04garbage", b"PK\x03\x04" + bytes(100), zipped({"a": b"x"})[:-10], b"PK\x05\x06" + b"\xff" * 18],
)
def test_broken_zip_is_unreadable_not_an_error(data: bytes) -> None:
    found = describe(0, "a.zip", "application/zip", data)
    assert found.archive
    assert "unreadable" in found.warnings or found.members == ()


def test_docx_is_a_document_not_an_archive() -> None:
    data = zipped({"[Content_Types].xml": b"<Types/>", "word/document.xml": b"<w:document/>"})
    found = describe(0, "report.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", data)
    assert found.sniffed_type == "application/zip"
    assert not found.archive and not found.executable and found.warnings == ()
    assert not found.risky


def test_macro_document_is_executable() -> None:
    data = zipped({"[Content_Types].xml": b"<Types/>", "word/vbaProject.bin": b"x"})
    assert describe(0, "report.docm", "application/octet-stream", data).executable


def test_opendocument_is_a_document() -> None:
    data = zipped({"mimetype": b"application/vnd.oasis.opendocument.text", "content.xml": b"<x/>"})
    found = describe(0, "letter.odt", "application/vnd.oasis.opendocument.text", data)
    assert not found.risky


def test_plain_zip_named_docx_is_an_archive() -> None:
    found = describe(0, "invoice.docx", "application/zip", zipped({"invoice.exe": PE}))
    assert found.archive and found.risky
    assert "executable_inside" in found.warnings
    assert found.members == ("invoice.exe",)


def test_unreadable_zip_named_docx_is_an_archive() -> None:
    found = describe(0, "invoice.docx", "application/zip", b"PK\x03\x04garbage")
    assert found.archive and found.warnings == ("unreadable",)


def test_executable_named_docx_is_executable() -> None:
    found = describe(0, "report.docx", "application/vnd.openxmlformats", PE)
    assert found.executable and found.sniffed_type == "application/x-msdownload"
