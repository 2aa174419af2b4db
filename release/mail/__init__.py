"""Notification mails: composing them from a stranger's text (:mod:`.compose`), sending them
over SMTP (:mod:`.sending`), their templates per language (:mod:`.templates`) and branding
(:mod:`.brand`)."""
