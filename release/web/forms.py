"""Flask-WTF forms; every form carries the ``csrf_token`` field."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import TextAreaField
from wtforms.validators import DataRequired, Length


class ReportForm(FlaskForm):
    """The sender's comment; the CAPTCHA answer is read by the view under its provider name."""

    comment = TextAreaField(
        _l("Why is this message not spam?"),
        validators=[DataRequired(message=_l("Please tell the recipient why your message is genuine."))],
    )

    def limit_comment(self, max_length: int) -> None:
        """Apply the configured maximum length (known only at run time); the message is
        translated only if it is shown."""
        self.comment.validators = [
            *self.comment.validators,
            Length(max=max_length, message=_l("Please keep the comment under %(n)d characters.", n=max_length)),
        ]


class ActionForm(FlaskForm):
    """A bare form for POST-only actions (release): just the CSRF token."""
