"""Generated questions for the benchmarks: raw mail for the pipeline, texts for the matcher.

A realistic mix, as a practice's forwarded day looks:

    code     "What is CPT 99213?", "is E11.9 still valid", a code pasted alone
    lay      "dx code for HTN with CKD 3a?", "code for a sprained ankle"
    note     a clinic note of several sentences: findings, negations, history
    command  "help", "balance" (a few; answered, never charged)
    machine  bounces, auto-replies, list mail, no-reply senders (never answered)

Every message has its own sender, so the per-sender reply caps and the guest
quota never decide an outcome. Bodies come as plain text, HTML only, or
both, with signatures, disclaimers and quoted earlier mail. Everything is
drawn from one `random.Random(seed)`: the same seed gives the same corpus.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from html import escape

MIX = (("code", 0.30), ("lay", 0.30), ("note", 0.27), ("command", 0.03), ("machine", 0.10))

LAY = [
    "HTN", "high blood pressure", "HTN with CKD stage 3a", "type 2 diabetes without complications",
    "DM2 with neuropathy", "type 1 diabetes with ketoacidosis", "COPD with acute exacerbation", "asthma, mild intermittent",
    "afib", "atrial flutter", "CHF, chronic systolic", "heart attack, first one", "chest pain", "shortness of breath",
    "sprained ankle, right", "broken wrist, left, initial visit", "low back pain", "sciatica on the left side",
    "migraine without aura", "UTI", "kidney stones", "pneumonia", "strep throat", "flu", "COVID-19",
    "seasonal allergies", "pink eye", "ear infection, left ear", "anxiety", "depression, single episode, moderate",
    "insomnia", "obesity, BMI 35", "high cholesterol", "hypothyroidism", "GERD", "constipation", "diarrhea",
    "iron deficiency anemia", "vitamin D deficiency", "osteoarthritis of the right knee", "gout flare, left big toe",
    "rheumatoid arthritis", "carpal tunnel, right hand", "shingles", "cellulitis of the left leg", "eczema",
    "psoriasis", "acne", "plantar fasciitis", "tennis elbow", "concussion without loss of consciousness",
    "dog bite on the hand", "fever", "cough", "headache", "dizziness", "nausea and vomiting", "rash",
    "pregnancy, 12 weeks", "annual physical, adult", "well child visit", "flu shot", "nicotine dependence, cigarettes",
    "alcohol use disorder, mild", "sleep apnea", "BPH", "erectile dysfunction", "hearing loss, both ears",
    "cataract, right eye", "glaucoma", "fall from ladder", "history of colon polyps", "screening colonoscopy",
]
LAY_FORMS = [
    "dx code for {c}?", "What's the ICD-10 code for {c}", "code for {c} please", "{c} - which code?",
    "Hi, what diagnosis code do I use for {c}?", "ICD 10 {c}", "Need the code for {c}, thanks",
    "how do I code {c}", "Which ICD-10-CM code fits {c}?", "{c}",
]
CODE_FORMS = [
    "What is CPT code {c}?", "Is {c} still a valid code?", "What does {c} mean?", "{c}", "code {c} description",
    "Can I bill {c}?", "Is {c} billable?", "What is {c} and what replaced it?", "ICD-10 {c}?", "quick one: {c}",
]
NOTE_FINDINGS = [
    "hypertension", "type 2 diabetes mellitus with hyperglycemia", "chronic kidney disease stage 3b",
    "heart failure with reduced ejection fraction", "atrial fibrillation on apixaban", "COPD",
    "acute bronchitis", "community acquired pneumonia", "urinary tract infection", "hyperlipidemia",
    "morbid obesity with BMI of 42", "major depressive disorder, recurrent, moderate", "generalized anxiety disorder",
    "osteoarthritis of both knees", "lumbar radiculopathy", "acute gout of the right foot", "migraine",
    "hypothyroidism", "iron deficiency anemia", "GERD", "obstructive sleep apnea", "peripheral neuropathy",
    "cellulitis of the right lower leg", "closed fracture of the left distal radius", "sprain of the right ankle",
    "acute otitis media", "streptococcal pharyngitis", "influenza", "dehydration", "syncope",
]
NOTE_NEGATED = ["chest pain", "fever", "shortness of breath", "diabetes", "pneumonia", "nausea", "headache", "rash"]
NOTE_HISTORY = ["breast cancer", "myocardial infarction", "stroke", "DVT", "colon polyps", "nicotine dependence"]
NOTE_OPENINGS = [
    "{age}-year-old {sex} seen today for follow-up.", "{age} y/o {sex} presents with {f}.",
    "Pt is a {age}yo {sex} here for {f}.", "Established patient, {age}-year-old {sex}.",
    "Chief complaint: {f}.", "Please help code this visit: {age}-year-old {sex}.",
]
FIRST = ["Ann", "Ben", "Carla", "Dev", "Elena", "Frank", "Grace", "Hugo", "Ines", "Jon", "Kim", "Luis", "Maya", "Nils",
         "Olga", "Priya", "Quinn", "Rosa", "Sam", "Tara", "Umar", "Vera", "Walt", "Xena", "Yuki", "Zoe"]
LAST = ["Adams", "Baker", "Chen", "Diaz", "Evans", "Fischer", "Garcia", "Hughes", "Ito", "Jones", "Khan", "Lopez",
        "Meyer", "Nguyen", "Okafor", "Patel", "Quist", "Rossi", "Smith", "Tran", "Ueda", "Varga", "Wong", "Young"]
DOMAINS = ["clinic.example", "familycare.example", "ortho-partners.example", "billing.example", "hospital.example",
           "pedsgroup.example", "coders.example", "heartcenter.example"]
SIGNATURE = "\n\n--\n{first} {last}, CPC\nCoding and billing\n{org}\nPhone 555-0100 ext. {ext}\n"
DISCLAIMER = (
    "\n\nCONFIDENTIALITY NOTICE: This e-mail and any attachments are for the exclusive and confidential use of the "
    "intended recipient. If you are not the intended recipient, please do not read, distribute or take action in "
    "reliance upon this message.\n"
)
QUOTED = "\n\nOn Mon, 3 Nov 2026 at 09:12, Front Desk <desk@{domain}> wrote:\n> Can you ask the consultant?\n> Thanks\n"


@dataclass(frozen=True)
class Generated:
    kind: str
    raw: bytes
    message_id: str
    sender: str
    answered: bool  # a reply is expected (everything but machine mail)


@dataclass(frozen=True)
class CodeSample:
    """Codes to ask about, drawn from the loaded code table (display forms)."""

    icd: tuple[str, ...]
    other: tuple[str, ...]  # CPT, HCPCS, PCS, deleted codes


def load_code_sample(engine, *, per_system: int = 400, seed: int = 7) -> CodeSample:  # type: ignore[no-untyped-def]
    """A spread of real codes from `engine`'s code table, so code questions ask about codes that exist."""
    from sqlalchemy import text

    with engine.connect() as conn:
        rows = conn.execute(text("SELECT system, display, status, billable FROM code WHERE kind = 'code'")).all()
    rng = random.Random(seed)
    icd = [d for s, d, st, b in rows if s == "ICD-10-CM" and b]
    other = [d for s, d, st, b in rows if s != "ICD-10-CM" or st == "deleted"]
    return CodeSample(
        tuple(rng.sample(icd, min(per_system * 4, len(icd)))),
        tuple(rng.sample(other, min(per_system, len(other)))),
    )


def question_text(rng: random.Random, kind: str, codes: CodeSample) -> str:
    """One question's text of `kind` (code, lay or note)."""
    if kind == "code":
        pool = codes.icd if rng.random() < 0.6 or not codes.other else codes.other
        code = rng.choice(pool)
        if rng.random() < 0.3:
            code = code.replace(".", "").lower()
        return rng.choice(CODE_FORMS).format(c=code)
    if kind == "lay":
        return rng.choice(LAY_FORMS).format(c=rng.choice(LAY))
    return clinic_note(rng)


def clinic_note(rng: random.Random) -> str:
    findings = rng.sample(NOTE_FINDINGS, rng.randint(1, 4))
    parts = [rng.choice(NOTE_OPENINGS).format(age=rng.randint(2, 94), sex=rng.choice(["male", "female"]), f=findings[0])]
    parts.append(f"Assessment: {', '.join(findings[:-1]) + ' and ' if len(findings) > 1 else ''}{findings[-1]}.")
    if rng.random() < 0.7:
        parts.append(f"Denies {' or '.join(rng.sample(NOTE_NEGATED, rng.randint(1, 3)))}.")
    if rng.random() < 0.4:
        parts.append(f"History of {rng.choice(NOTE_HISTORY)}, no recurrence.")
    if rng.random() < 0.3:
        parts.append(rng.choice(["Possible early cellulitis, rule out abscess.", "Labs pending.",
                                 "Return in 3 months.", "Counseled on diet and exercise."]))
    return " ".join(parts)


def _person(rng: random.Random, n: int) -> tuple[str, str, str, str]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    domain = rng.choice(DOMAINS)
    return first, last, domain, f"{first.lower()}.{last.lower()}{n}@{domain}"


def build_mail(rng: random.Random, n: int, kind: str, codes: CodeSample, *, to: str, now: datetime) -> Generated:
    """Message number `n` of `kind`, as raw bytes with a unique Message-ID and sender."""
    first, last, domain, sender = _person(rng, n)
    msg = EmailMessage()
    msg["Date"] = format_datetime(now)
    msg["To"] = to
    message_id = f"<bench-{n}-{rng.getrandbits(40):x}@{domain}>"
    msg["Message-ID"] = message_id
    if kind == "machine":
        sender = _machine_headers(rng, msg, n, domain)
        body = "This message was generated automatically.\n"
    else:
        msg["From"] = f"{first} {last} <{sender}>"
        if kind == "command":
            msg["Subject"] = rng.choice(["help", "balance", "Help"])
            body = "\n"
        else:
            text = question_text(rng, kind, codes)
            msg["Subject"] = rng.choice(["Coding question", "dx code", "Question", f"Re: {text[:40]}", "Help please"])
            body = _dress(rng, text, first, last, domain)
    if kind != "machine" and rng.random() < 0.15:
        msg.set_content(_html(body), subtype="html")
    elif kind != "machine" and rng.random() < 0.3:
        msg.set_content(body)
        msg.add_alternative(_html(body), subtype="html")
    else:
        msg.set_content(body)
    return Generated(kind, msg.as_bytes(), message_id, sender, answered=kind != "machine")


def _dress(rng: random.Random, text: str, first: str, last: str, domain: str) -> str:
    body = ("Hello,\n\n" if rng.random() < 0.4 else "") + text
    if rng.random() < 0.6:
        body += SIGNATURE.format(first=first, last=last, org=domain.split(".")[0].title(), ext=rng.randint(100, 999))
    if rng.random() < 0.25:
        body += DISCLAIMER
    if rng.random() < 0.2:
        body += QUOTED.format(domain=domain)
    return body


def _html(text: str) -> str:
    paragraphs = "".join(f"<p>{escape(p)}</p>" for p in text.split("\n\n"))
    return f"<html><body><div style=\"font-family:Calibri\">{paragraphs}</div></body></html>"


def _machine_headers(rng: random.Random, msg: EmailMessage, n: int, domain: str) -> str:
    """Headers of one kind of robot mail; returns the From address."""
    kind = rng.choice(["bounce", "autoreply", "list", "noreply"])
    if kind == "bounce":
        sender = f"MAILER-DAEMON@mx{n}.{domain}"
        msg["Subject"] = "Undelivered Mail Returned to Sender"
        msg["X-Failed-Recipients"] = f"gone{n}@{domain}"
    elif kind == "autoreply":
        sender = f"away{n}@{domain}"
        msg["Subject"] = "Out of Office: Coding question"
        msg["Auto-Submitted"] = "auto-replied"
    elif kind == "list":
        sender = f"digest{n}@lists.{domain}"
        msg["Subject"] = "Coding newsletter, week 45"
        msg["List-Id"] = f"<coding-news.lists.{domain}>"
        msg["Precedence"] = "list"
    else:
        sender = f"no-reply@mail{n}.{domain}"
        msg["Subject"] = "Your statement is ready"
    msg["From"] = sender
    return sender


def generate_mail(count: int, codes: CodeSample, *, to: str, seed: int = 1, start: int = 0) -> list[Generated]:
    """`count` messages in the MIX proportions, shuffled; numbers from `start` keep senders distinct."""
    rng = random.Random(seed)
    kinds = [k for k, share in MIX for _ in range(round(count * share))]
    kinds = (kinds + ["note"] * count)[:count]
    rng.shuffle(kinds)
    now = datetime.now(UTC)
    return [build_mail(rng, start + i, kind, codes, to=to, now=now) for i, kind in enumerate(kinds)]


def generate_texts(count: int, codes: CodeSample, *, seed: int = 2) -> list[dict[str, str]]:
    """Matcher inputs (`{"id", "text"}`): a third each of code, lay and note questions."""
    rng = random.Random(seed)
    kinds = ("code", "lay", "note")
    return [{"id": f"gen-{i}", "text": question_text(rng, kinds[i % 3], codes)} for i in range(count)]
