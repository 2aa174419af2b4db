"""The demo's invoice mail: what a preview must cope with in real life, a text and an HTML
version of the same letter (multipart/alternative) and a PDF attached (multipart/mixed)."""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formataddr, formatdate, make_msgid

from release.devtools.simulator.rfc5322 import message_id_domain

TEXT = """Dear Accounts team,

please find attached invoice {number} for the deliveries of March.

Amount due: EUR 4,812.50
Due date:   30 April 2024
IBAN:       DE02 1203 0000 0000 2020 51 (Supplier Ltd)

Kind regards,
Maria Lind
Billing, Supplier Ltd
"""

HTML = """<!DOCTYPE html>
<html><body style="font-family: sans-serif">
<p>Dear Accounts team,</p>
<p>please find attached invoice <strong>{number}</strong> for the deliveries of March.</p>
<table>
<tr><td>Amount due</td><td><strong>EUR 4,812.50</strong></td></tr>
<tr><td>Due date</td><td>30 April 2024</td></tr>
<tr><td>IBAN</td><td>DE02 1203 0000 0000 2020 51 (Supplier Ltd)</td></tr>
</table>
<p>Kind regards,<br>Maria Lind<br>Billing, Supplier Ltd</p>
</body></html>
"""


def invoice_message(sender: str, recipients: list[str], subject: str, ts: float, number: str) -> bytes:
    """The invoice ``number`` from ``sender``, as multipart/mixed bytes with CRLF line ends."""
    message = EmailMessage(policy=SMTP)
    message["From"] = formataddr(("Supplier Ltd Billing", sender))
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message["Date"] = formatdate(ts, usegmt=True)
    message["Message-ID"] = make_msgid(domain=message_id_domain(sender))
    message.set_content(TEXT.format(number=number))
    message.add_alternative(HTML.format(number=number), subtype="html")
    message.add_attachment(
        one_page_pdf(f"Invoice {number}"), maintype="application", subtype="pdf", filename=f"Invoice-{number}.pdf"
    )
    for part in message.walk():
        if part is not message:
            del part["MIME-Version"]  # the library repeats it in parts; mail clients do not
    return message.as_bytes()


def one_page_pdf(line: str) -> bytes:
    """A small, valid PDF: one page showing ``line`` (ASCII), with a correct xref table."""
    text = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    stream = f"BT /F1 24 Tf 72 720 Td ({text}) Tj ET".encode("ascii")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)
