"""The markers the composer leaves where each recipient's own values go; the message builder fills them.

Plain ASCII words, so MJML, premailer and quoted-printable leave them whole. Kept apart from the composer
so that the message builder (and the commands that only read the store) do not import it.
"""
EMAIL_SLOT = "__MAILER_EMAIL__"
UNSUBSCRIBE_SLOT = "__MAILER_UNSUBSCRIBE_URL__"
PREFERENCES_SLOT = "__MAILER_PREFERENCES_URL__"
SLOTS = (EMAIL_SLOT, UNSUBSCRIBE_SLOT, PREFERENCES_SLOT)  # the recipient's name goes only into the To header
