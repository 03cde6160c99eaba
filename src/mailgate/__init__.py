"""mailgate: relay mail from plain-SMTP devices to Exchange Online / Outlook.com with OAuth 2.0."""

__version__ = "0.1.0"
