"""CaseConsultant: an email coding consultant.

A worker polls an IMAP mailbox, turns each message into a case, matches
medical codes (ICD-10-CM, ICD-10-PCS, CPT, HCPCS Level II), checks the
sender's quota and replies by SMTP with a templated email.
"""

__version__ = "0.1.0"
