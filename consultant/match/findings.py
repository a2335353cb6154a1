"""Splitting a note into findings and deciding what each one asserts.

A finding is a clause: sentences are cut at full stops, semicolons and
colons, and again at commas and at words that turn the sense ("but",
"however"). Inside a clause a negation trigger ("no", "denies", "negative
for", "ruled out") negates everything after it (or, for triggers written
after the condition, such as "was ruled out", everything before it).

Outpatient coding does not code uncertain diagnoses ("probable", "suspected",
"rule out"); those clauses are marked uncertain so that their codes are
suppressed, as negated ones are. Inpatient wording ("admitted", "discharge")
turns that rule off.

A vaccination "against" or "for" a disease names a disease the patient does
not have: the clause keeps the immunization and drops the rest. An organism
after "due to" or "with" ("UTI due to E. coli") and what a test found
("screening colonoscopy found a polyp") are clauses of their own; dates and
record numbers are dropped before anything else.

"History of" and its cousins mark a clause as history: the condition is not
current, and the history codes (Z85-Z87) are searched instead. A status
that lasts (an artificial joint, a bypass graft, an amputation) is not
history: its status code is current. "Family
history" is kept apart (Z80-Z84).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache

from consultant.match.lexicon import Lexicon


@dataclass(frozen=True)
class Clause:
    text: str  # as written
    words: tuple[str, ...]  # after lexicon rewriting
    negated: bool = False
    uncertain: bool = False
    history: bool = False
    family: bool = False
    evidence: tuple[str, ...] = ()
    sentence: int = 0
    diagnosis: bool = False  # said as the assessment ("Assessment: pleurisy", "Diagnosis: croup")


# "UTI due to E. coli": the organism is a finding of its own (B95-B96, "as the cause of
# diseases classified elsewhere"), as after a comma; a title naming both the condition and
# the organism ("Pneumonia due to MRSA") is still found by the sentence taken whole.
_ORGANISMS = (
    r"e\.?\s?coli|escherichia|mrsa|mssa|staph|staphylococc\w*|strep|streptococc\w*|group\s+[ab]\s+strep\w*|gbs|"
    r"pseudomonas|klebsiella|proteus|enterococc\w*|h\.?\s?pylori|helicobacter|haemophilus|h\.?\s?flu|"
    r"mycoplasma|bacteroides"
)
_ORGANISM = re.compile(
    r"(?<!colonized)(?<!colonised)(?<!contact)(?<!exposed)(?<!exposure)(?<!carrier)"  # carriers and contacts: Z20, Z22
    r"(?<!enteritis)(?<!colitis)(?<!diarrhea)(?<!diarrhoea)"  # an intestinal infection is named with its organism (A04)
    rf"\s+(?:due\s+to|caused\s+by|secondary\s+to|from|with|positive\s+for)\s+(?=(?:an?\s+|the\s+)?(?:{_ORGANISMS})\b)",
    re.IGNORECASE,
)
# "E. coli UTI" is "UTI due to E. coli" written the other way round
_ORGANISM_FIRST = re.compile(
    rf"\b((?:{_ORGANISMS})\.?)\s+(uti|urinary\s+tract\s+infection|cellulitis|wound\s+infection|abscess|bacteremia)"
    r"((?:\s+(?:of|on|in)\s+(?:the\s+)?(?:left\s+|right\s+)?[a-z]+(?:\s+[a-z]+)?)?)(?=\s*(?:[,.;:]|$)|\s+(?:and|but)\b)",
    re.IGNORECASE,
)
# ... and so is the infection a sepsis came from ("sepsis due to pneumococcal pneumonia": J13 beside
# the sepsis; the sentence taken whole still finds the sepsis named by its organism, A40.3)
_SOURCE = re.compile(r"(?<=sepsis)\s+(?:due\s+to|secondary\s+to|from|caused\s+by)\s+(?=\w)", re.IGNORECASE)
# ... and when the source is written with its organism ("sepsis due to E. coli UTI"), the sepsis is
# named by that organism too (A41.51 beside N39.0): the organism is said for both
_SOURCE_ORGANISM = re.compile(
    rf"\b(sepsis|septicemia)\s+(?:due\s+to|secondary\s+to|from|caused\s+by)\s+((?:{_ORGANISMS})\.?)(?=\s+[a-z])",
    re.IGNORECASE,
)
_SENTENCE = re.compile(r"[.!?]+['\"\u2019\u201d)]*(?=\s+[A-Z0-9]|\s*$)|[;\n]|:(?=\s)")
# ... and at an arrow or an equals sign ("fever, rash -> Kawasaki disease"), before what is "now" (a stroke
# "in 2023 now admitted with pneumonia": the past ends there), and at what a test found: "screening colonoscopy found a polyp" is the screening and
# the polyp (guideline I.C.21.c.5), "CT showed no bleed" a test and a negated finding.
_CLAUSE = re.compile(
    r"(,|-+>|=+>|\u2192|(?<=\s)=(?=\s)|(?<=\s)(?:-{1,2}|\u2013|\u2014)(?=\s)|\b(?:but|however|although|though|whereas|except|(?<!not )(?<!bacilli )found|showed|shows|revealed|reveals"
    r"|demonstrated|demonstrates)\b|(?=\bnow\s+(?:admitted|presents?|presenting|here|seen|returns?|comes?|with|has)\b))",
    re.IGNORECASE,
)

# A comma part made only of these words qualifies the part before it
# ("Osteoarthrosis, localized, primary, lower leg"; "AAA, not ruptured";
# "Decubitus ulcer of heel, stage II") instead of being a finding of its own.
QUALIFIER_WORDS = frozenset(
    """left right bilateral both unilateral mild moderate severe profound acute chronic subacute recurrent
    intermittent persistent episodic primary secondary localized localised generalized generalised unspecified nos
    episode episodes uncontrolled intertrochanteric subtrochanteric comminuted oblique spiral segmental suppurative
    simple complicated uncomplicated type stage grade i ii iii iv v 1 2 3 4 5 3a 3b initial subsequent sequela
    encounter closed open displaced nondisplaced site sites part parts region multiple single upper lower limb
    limbs leg legs arm arms hand hands foot feet knee knees hip hips shoulder shoulders elbow elbows wrist wrists
    ankle ankles thigh thighs forearm forearms finger fingers toe toes heel heels back neck head face trunk pelvis
    pelvic eye eyes ear ears side sided of the and or region joint joints unilateral partial complete total
    juvenile adult infantile congenital acquired late early onset organism first second third trimester lung lungs
    breast breasts kidney kidneys ovary ovaries testis testicle lobe""".split()
)
_QUALIFIER_LEADS = ("with", "without", "not", "due", "in", "stage", "type", "grade", "unspecified", "site", "nos", "attributed",
                    "attributable", "caused", "secondary")

Phrases = dict[str, tuple[tuple[str, ...], ...]]  # first word -> the phrases it starts


def _phrases(*phrases: tuple[str, ...]) -> Phrases:
    """Phrases grouped by their first word: only those that can start at a word are compared with it."""
    out: dict[str, list[tuple[str, ...]]] = {}
    for p in phrases:
        out.setdefault(p[0], []).append(p)
    return {first: tuple(ps) for first, ps in out.items()}


PRE_NEGATION = _phrases(
    ("no", "evidence", "of"), ("no", "signs", "of"), ("no", "sign", "of"), ("negative", "for"), ("neg", "for"),
    ("free", "of"), ("ruled", "out"), ("rules", "out"), ("absence", "of"), ("never", "had"), ("denies",),
    ("denied",), ("deny",), ("no",), ("not",), ("never",), ("without", "evidence", "of"), ("nor",),
    ("stopped",), ("finished",), ("completed",), ("discontinued",), ("no", "longer"),
)
POST_NEGATION = _phrases(
    ("ruled", "out"), ("was", "ruled", "out"), ("is", "negative"), ("was", "negative"), ("were", "negative"),
    ("negative",), ("absent",), ("intact",), ("finished",), ("completed",), ("discontinued",), ("not", "found"),
    ("not", "seen"), ("resolved",), ("normal",), ("unremarkable",),
    ("is", "clear"), ("was", "clear"), ("clear",), ("excluded",), ("not", "suspected"), ("not", "present"),
    ("not", "identified"), ("not", "detected"), ("unlikely",), ("not", "confirmed"),
    ("spared",), ("no", "longer", "active"), ("is", "no", "longer", "active"), ("fully", "healed"),
    ("has", "healed"), ("has", "fully", "healed"),
)
UNCERTAIN = _phrases(
    ("rule", "out"), ("r", "o"), ("probable",), ("probably",), ("possible",), ("possibly",), ("suspected",),
    ("suspect",), ("suspicious", "for"), ("concern", "for"), ("concerning", "for"), ("likely",), ("questionable",),
    ("cannot", "exclude"), ("can't", "exclude"), ("query",), ("presumed",), ("versus",), ("differential",),
    ("working", "diagnosis"), ("consistent", "with"), ("compatible", "with"),
)
_LEADING_HISTORY = (
    ("history", "of"), ("hx", "of"), ("h", "o"), ("past", "history"), ("previous",), ("previously",), ("prior",),
    ("treated", "for"), ("remote",), ("childhood",), ("personal", "history"),
)
HISTORY = _phrases(*_LEADING_HISTORY, ("ago",), ("in", "the", "past"),
                   ("no", "recurrence"))
# "History of A, B and C" makes the clauses after it history too; "MI 2 years ago" only its own
# ("CAD of native vessels, s/p MI 2 years ago": the CAD is current).
LEADING_HISTORY = _phrases(*_LEADING_HISTORY)
FAMILY = _phrases(
    ("family", "history"), ("mother", "had"), ("father", "had"), ("mom", "had"), ("dad", "had"), ("sister", "had"),
    ("brother", "had"), ("mother", "has"), ("father", "has"), ("mother's",), ("father's",),
)
# A family clause runs on until one says it is the patient's own again ("mother had breast cancer,
# patient has HTN"); of a newborn, what the mother had is the newborn's own exposure (P00-P04, P70).
_SELF = _phrases(("patient",), ("pt",), ("she", "has"), ("he", "has"), ("she", "is"), ("he", "is"))
_NEWBORN_WORDS = frozenset({"newborn", "neonate", "neonatal", "infant", "baby", "idm", "born"})
# Z-code wording whose "suspected", "not found" or "ruled out" is the code's
# own ("Encounter for observation for suspected ... ruled out", "Carrier or
# suspected carrier", "Contact with and (suspected) exposure to").
_TITLE_WORDING = _phrases(
    ("encounter", "for"), ("observation", "for"), ("carrier",), ("contact", "with"), ("exposure", "to"),
    ("screening", "for"),
)
# A device, an operation's lasting result or a healed infarct stays ("history of a knee
# replacement" is an artificial knee joint today, Z96.65-; a past MI is I25.2; a dependence in
# remission is F1x.21): its own code, not a history code.
_STATUS = _phrases(("presence", "of"), ("acquired", "absence"), ("old", "myocardial", "infarction"),
                  ("in", "remission"), ("sustained", "remission"), ("early", "remission"))
_NOW = _phrases(("today",), ("now",), ("currently",), ("new",))  # a history sentence that says so is current
INPATIENT = re.compile(r"\b(admitted|admission|inpatient|discharge[ds]?|hospital course)\b", re.IGNORECASE)
# ... but a patient sent home from the emergency department or a clinic was an outpatient
_ADMITTED = re.compile(r"\b(admitted|admission|inpatient|hospital course)\b", re.IGNORECASE)
_OUTPATIENT = re.compile(
    r"\b(?:ED|ER)\b|\b(?i:emergency (?:department|room)|urgent care|clinic|office visit|outpatient)\b"
)
# Where a note was written, or who asks ("ED note:", "Derm:", "Coder q:"), names no condition:
# "ED" is no erectile dysfunction there, "q" no Q fever.
_LABEL = re.compile(
    r"(?:^|(?<=[.;\n]))\s*(?i:(?:inpt|inpatient|outpt|outpatient|op|ip)\s+)?(?:ED|ER|UC|PT|OT|(?i:urgent care|clinic|"
    r"office|inpatient|outpatient|derm|dermatology|cardiology|transplant clinic|plastics|"
    r"cardio|ortho|orthopedics|peds|pediatrics|ob|ob/gyn|gyn|psych|psychiatry|neuro|neurology|onc|oncology|pulm|"
    r"nephrology|endo|ophtho|pcp|telehealth|hpi|cc|chief complaint|coder|coding|coder question|coding question|"
    r"coder q|coding q|question|q))(?i:\s+(?:note|visit|triage|consult|follow-up|f/u|eval|evaluation))?"
    r"(?i:\s+(?:today|yesterday))?\s*(?::|\s-|\s\u2013)(?=\s)"
)
_ONLY_CONFIRMING = {"diagnosis", "assessment", "impression", "dx", "final"}
_DIAGNOSIS_LEAD = re.compile(r"\s*(?:final\s+)?(?:diagnosis|assessment|impression|dx|a/p|assessment and plan)\b", re.IGNORECASE)


# Dates and record numbers say when and whose, never what: their digits are no words of a
# title ("seen 03/14/2024" is not "14 weeks gestation"; "2024" no COVID-19).
_DATE = re.compile(r"\b(?:\d{1,2}/\d{1,2}(?:/\d{2,4})?|\d{1,2}-\d{1,2}-\d{2,4}|\d{4}-\d{1,2}-\d{1,2})\b(?![.\d])")
_RECORD = re.compile(r"\b(?:mrn|acct|account|record|member|dob|d\.o\.b\.)\s*(?:no\.?|number|#)?\s*:?\s*#?[\w/-]*\d[\w/-]*",
                     re.IGNORECASE)


# How a question asks ("what's the dx code", "which code do I use for") names nothing
_ASKING = re.compile(
    r"\b(?:(?:what(?:'s|s| is)?|which|how)\s+(?:(?:is|are)\s+)?(?:the\s+)?"
    r"(?:(?:icd[- ]?10(?:[- ]?cm)?|dx|diagnosis|billing)\s+)?"
    r"(?:codes?(?:\s+(?:do\s+i\s+use|to\s+use|for))?|do\s+(?:i|we)(?:\s+(?:use|code|bill))?(?:\s+for)?|to\s+code)"
    r"|(?:dx|icd[- ]?10|diagnosis)\s+codes?(?:\s+for)?"
    r"|(?:what(?:'s|s| is)?|which)\s+(?:is\s+)?(?:the\s+)?(?:dx|diagnosis)"
    r"|(?:do|can|should)\s+(?:i|we)(?:\s+still)?(?:\s+need(?:\s+to)?)?(?:\s+(?:use|code|bill|report))?(?:\s+a)?"
    r"(?:\s+separate)?"
    # who wrote it down is no finding either ("provider documents sepsis", "doc wrote ...")
    r"|(?:the\s+)?(?:provider|physician|doctor|doc|attending|surgeon|dr\.?(?:\s+[a-z]+)?)\s+"
    r"(?:documents|documented|wrote|writes|charted|charts|states|stated|diagnosed|dx'?d)"
    r"(?:\s+(?:that|(?:the\s+)?(?:patient|pt)\s+has))?"
    r"|(?:(?:the\s+)?(?:provider|physician|doctor|doc|practice|office|clinic)\s+)?wants?\s+to\s+(?:bill|code|submit)"
    r"(?:\s+(?:it|this|today))?"
    # a test still to be done or read says nothing yet ("CXR ordered, results pending")
    r"|(?:results?|labs?|cultures?|tests?|studies|imaging|work-?up|cxr|x-?rays?|ct|mri|ultrasound|ekg|ecg|echo)"
    r"\s+(?:(?:is|are|was|were)\s+)?(?:ordered|pending|sent|scheduled|requested|to\s+follow|drawn))\b\??",
    re.IGNORECASE,
)


def _asked(match: re.Match[str]) -> str:
    # a question that opened a sentence leaves the sentence's end ("... bronchitis. Do I code the DVT?")
    before = match.string[: match.start()].rstrip()
    return "\n" if not before or before[-1] in ".!?;:\n" else " "


# a wound's or a polyp's size ("3 cm lac"): no word of a title, and "1-3 cm" would read as a
# kidney's "moderate laceration"
# ... nor is a dose with how often it is taken ("40 mg daily": no blood alcohol level of 40 mg,
# no new daily persistent headache) or a phone number
_SIZE = re.compile(
    r"\b\d+(?:\.\d+)?\s?(?:cm|mm|mg|mcg|ml|units?|iu|meq)\b"
    r"(?:\s+(?:po\s+|iv\s+|sq\s+|im\s+)?(?:daily|nightly|weekly|monthly|bid|tid|qid|qd|qhs|qam|qpm|prn|once|twice)"
    r"(?:\s+(?:a|per)\s+(?:day|week|month))?\b)?"
    r"|(?:\b(?:call(?:\s+back)?|phone|tel|cell|fax)\s*:?\s*(?:at\s+)?)?\(?\b\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}\b",
    re.IGNORECASE,
)
# a lab's value is no word of a title ("A1c 9.8" is not "9" and "8")
_LAB_VALUE = re.compile(
    r"\b((?:hb)?a1c|glucose|bg|ldl|tsh|inr|egfr|gfr|creatinine|potassium|sodium|fever|temp|temperature|tmax)"
    r"\s*(?:of|was|is|=|:)?\s*\d+(?:\.\d+)?\s*(?:%|\u00b0?\s?[fc]\b)?",
    re.IGNORECASE,
)
# a blood pressure says what it is: high (>= 140/90) an elevated reading, low (systolic < 90) hypotension
_BLOOD_PRESSURE = re.compile(r"\b(?:bp|blood\s+pressure)\s*(?:of|was|is|=|:)?\s*(\d{2,3})\s*/\s*(\d{2,3})\b",
                             re.IGNORECASE)


_HYPERTENSION = re.compile(r"\b(?:htn|hypertension|hypertensive)\b", re.IGNORECASE)


def _blood_pressure(match: re.Match[str]) -> str:
    systolic, diastolic = int(match.group(1)), int(match.group(2))
    if systolic >= 140 or diastolic >= 90:
        text = match.string
        known = any(not _NEGATED_BEFORE.search(text[: m.start()]) for m in _HYPERTENSION.finditer(text))
        return " " if known else "elevated blood pressure reading"  # a hypertensive's reading is no finding
    return "hypotension" if systolic < 90 else " "


# "62F", "45 yo M", "(2019)": who and when; no word of a title ("2019" is no COVID-19)
_AGE_SEX = re.compile(r"\b\d{1,3}\s?(?:[MF]|y/?o\s?[MF]?|yo[MF])\b|\((?:19|20)\d\d\)"
                      r"|\b\d{1,3}[- ](?=(?:year|yr|month|mo|week|wk|day)s?[- ]old\b)")  # "5-year-old": no "type 5"


# A condition a drug caused is that condition "due to drugs" and the drug's adverse effect (T36-T50,
# 5th or 6th character 5; guideline I.C.19.e.5.a): "rash from amoxicillin", "hypotension after starting
# metoprolol", "steroid-induced hyperglycemia". The drugs are the lexicon's, named there by their class.
_CAUSED_BY_DRUG = (r"(?:from|due\s+to|secondary\s+to|caused\s+by|attributed\s+to|since\s+starting(?:\s+on)?|"
                   r"after\s+(?:starting|beginning)(?:\s+on)?|after\s+(?:a|the|his|her)\s+(?:first\s+)?dose\s+of|"
                   r"on\s+day\s+\d+\s+of)")
_NOT_CONDITION = r"(?:from|due|for|with|on|after|since|in|of|and|but|while)\b"
_NEGATED_BEFORE = re.compile(r"\b(?:no|not|denies|denied|without|negative|never|ruled)\b[^,.;:]*$", re.IGNORECASE)
_INDUCED_CUE = re.compile(r"induced|related|associated", re.IGNORECASE)
_CHANGED_CUE = re.compile(r"\b(?:was|were)\s", re.IGNORECASE)
_CAUSED_CUE = re.compile(rf"\s{_CAUSED_BY_DRUG}\s", re.IGNORECASE)


@lru_cache(maxsize=4)
def _drug_patterns(names: tuple[str, ...]) -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    drugs = "|".join(re.escape(n).replace(r"\ ", r"[\s-]+") for n in names)
    return (
        re.compile(rf"\b({drugs})-?\s*(?:induced|related|associated)\s+((?:(?!{_NOT_CONDITION})[a-z]+\b\s?){{1,4}})",
                   re.IGNORECASE),
        re.compile(rf"(?<=[a-z])\s+{_CAUSED_BY_DRUG}\s+({drugs})\b", re.IGNORECASE),
        re.compile(rf"(?<=[a-z])\s+(?:after|since|when)\s+(?:(?:the|his|her)\s+)?({drugs})\s+(?:dose\s+)?"
                   r"(?:was|were)\s+(?:started|increased|uptitrated|titrated\s+up|added|doubled|begun)\b",
                   re.IGNORECASE),
    )


def _drug_effects(text: str, lexicon: Lexicon) -> str:
    if not lexicon.adverse_drugs:
        return text
    induced, caused, changed = _drug_patterns(lexicon.adverse_drugs)

    def effect(match: re.Match[str], drug: str, condition: str = "") -> str:
        if _NEGATED_BEFORE.search(match.string[: match.start()]):
            return match.group(0)  # "no rash from amoxicillin": nothing the drug did
        return f"{condition.strip()} due to drugs, adverse effect of {drug}" + (" " if condition else "")

    # each pattern runs only where its cue words are (the drug names make them slow to scan)
    if _INDUCED_CUE.search(text):
        text = induced.sub(lambda m: effect(m, m.group(1), m.group(2)), text)
    if _CHANGED_CUE.search(text):
        text = changed.sub(lambda m: effect(m, m.group(1)), text)
    if _CAUSED_CUE.search(text):
        text = caused.sub(lambda m: effect(m, m.group(1)), text)
    return text


# "nosebleed in a pt on warfarin", "acute bronchitis in a patient with COPD": the patient's other
# conditions are findings of their own, not words of the first one's title
_IN_A_PATIENT = re.compile(
    r"\s+in\s+(?:a|an|the|this|our)?\s*(?:\d{1,3}\s*(?:yo|y/o|year[- ]old)\s+)?"
    r"(?:pt|patient|man|woman|male|female|child|kid|lady|gentleman)\s+(?=(?:with|on|who|w/)\b)",
    re.IGNORECASE,
)
# a joint that was replaced is there as an artificial joint (Z96.6-): "R hip was replaced in 2020"
_REPLACED_JOINT = re.compile(
    r"\b(hip|knee|shoulder|elbow|wrist|ankle)s?\s+(?:(?:was|were|has\s+been|had\s+been|got|been)\s+)?replaced\b",
    re.IGNORECASE,
)


# A fracture in a note that names osteoporosis or a fragility fracture is the osteoporosis's
# pathological fracture (M80.0-), a compression fracture the vertebra's
_OSTEOPOROSIS = re.compile(r"\b(?:osteoporo\w*|fragility)\b", re.IGNORECASE)
_OSTEOPOROTIC_FRACTURE = re.compile(r"\b(compression\s+)?(?:fracture|fx)\b", re.IGNORECASE)


def _osteoporotic_fractures(text: str) -> str:
    if not _OSTEOPOROSIS.search(text):
        return text

    def pathological(m: re.Match[str]) -> str:
        if _NEGATED_BEFORE.search(m.string[: m.start()]):
            return m.group(0)  # "no fragility fractures": nothing to read
        return "age related osteoporosis with current pathological fracture" + (" of vertebra" if m.group(1) else "")

    return _OSTEOPOROTIC_FRACTURE.sub(pathological, text)


# A polyp the pathology calls an adenoma is a benign neoplasm of its site (D12.-; guideline
# I.C.21.c.5: the screening, then what it found), unless the adenomas are history
_ADENOMA = re.compile(r"\b(?:tubular|villous|tubulovillous|sessile|serrated)?\s*adenoma(?:tous)?\b", re.IGNORECASE)
_ADENOMA_HISTORY = re.compile(r"\b(?:history|hx|h/o|surveillance)\b[^.;]*$", re.IGNORECASE)
_POLYP_SITE = re.compile(
    r"\b(cecal|cecum|ascending|transverse|descending|sigmoid|rectosigmoid|rectal|rectum)\s+(?:colon\s+)?polyps?\b"
    r"|\bpolyps?\s+(?:in|of|at)\s+the\s+(cecum|ascending|transverse|descending|sigmoid|rectosigmoid|rectum)\b",
    re.IGNORECASE,
)
_SITE_NAMES = {"cecal": "cecum", "rectal": "rectum"}


def _adenomas(text: str) -> str:
    if not any(not _ADENOMA_HISTORY.search(text[: m.start()]) for m in _ADENOMA.finditer(text)):
        return text

    def site(m: re.Match[str]) -> str:
        name = (m.group(1) or m.group(2)).lower()
        name = _SITE_NAMES.get(name, name)
        return f"benign neoplasm of {name}" + ("" if name in ("cecum", "rectum") else " colon")

    return _POLYP_SITE.sub(site, text)


_Replacement = str | Callable[[re.Match[str]], str]
# What is read out of a text before its clauses, in this order (each pattern's comment says why):
# numbers that are no words first, then what the text's own wording means, then how it asks.
_BEFORE_READING: tuple[tuple[re.Pattern[str], _Replacement], ...] = (
    (_BLOOD_PRESSURE, _blood_pressure),
    (_RECORD, " "), (_DATE, " "), (_AGE_SEX, " "), (_LAB_VALUE, r"\1"),
    (_IN_A_PATIENT, ", patient "),
    (re.compile(r"\bhand,\s*foot,?\s*(?:and|&)\s*mouth\b", re.IGNORECASE), "hand foot and mouth"),  # one name
)
_AFTER_DRUGS: tuple[tuple[re.Pattern[str], _Replacement], ...] = (
    (_REPLACED_JOINT, r"presence of artificial \1 joint"),
    (_ASKING, _asked), (_SIZE, " "),
)
# ... and once the setting is known (an admission decides how uncertain diagnoses are read), the
# setting labels and how one finding relates to another
_RELATIONS: tuple[tuple[re.Pattern[str], _Replacement], ...] = (
    (_LABEL, " "),
    (re.compile(r"(?<=\w)-versus-(?=\w)"), "-vs-"),  # graft-versus-host is a name, not a differential
    (_SOURCE_ORGANISM, r"\1 due to \2, \2"), (_ORGANISM_FIRST, r"\2\3, \1"), (_ORGANISM, ", "), (_SOURCE, ", "),
)


def _rewrite(text: str, steps: tuple[tuple[re.Pattern[str], _Replacement], ...]) -> str:
    for pattern, replacement in steps:
        text = pattern.sub(replacement, text)
    return text


def split_clauses(text: str, lexicon: Lexicon) -> list[Clause]:
    """The clauses of `text` with what each asserts; empty clauses dropped."""
    text = _rewrite(_drug_effects(_rewrite(text, _BEFORE_READING), lexicon), _AFTER_DRUGS)
    text = _adenomas(_osteoporotic_fractures(text))
    admitted = bool(_ADMITTED.search(text))
    inpatient = bool(INPATIENT.search(text)) and (admitted or not _OUTPATIENT.search(text))
    text = _rewrite(text, _RELATIONS)
    out: list[Clause] = []
    labelled = False  # the sentence follows "Assessment:" / "Diagnosis:"
    for number, sentence in enumerate(_SENTENCE.split(text)):
        sentence_words = _raw_words(sentence)
        after_label, labelled = labelled, bool(sentence_words) and set(sentence_words) <= _ONLY_CONFIRMING | {"final", "and", "plan", "a", "p"}
        now = _has(sentence_words, _NOW)
        history_open = False  # a leading history cue was met earlier in this sentence
        family = False  # ... and a family one ("Screening colonoscopy, no family history of ...": hers)
        sentence_negated = False
        parts, concluded = _parts_and_conclusion(sentence, lexicon)
        for n_part, part in enumerate(parts):
            conclusion = concluded and n_part == len(parts) - 1
            part_words = _raw_words(part)
            family = ((_has(part_words, FAMILY) and not _NEWBORN_WORDS.intersection(part_words))
                      or (family and not _has(part_words, _SELF)))
            words, evidence = lexicon.rewrite(part)
            words = _drop_prevented(_drop_durations(words))
            if not words:
                continue
            if out and out[-1].sentence == number and _closes_the_previous(words):
                # "pneumonia, resolved", "TIA, fully resolved with no residual deficits": the part before
                # is past (a history code), and what follows is not negated by it
                out[-1] = replace(out[-1], history=True)
                continue
            title_like = _has(words, _TITLE_WORDING)
            pieces = [(words, False)] if title_like else _negation_pieces(words)
            for piece, negated in [(seg, neg) for whole, neg in pieces for seg in _encounter_and_its_condition(whole)]:
                if negated:
                    sentence_negated = True
                elif sentence_negated and _continues_negation(piece):
                    negated = True
                uncertain = _has(piece, UNCERTAIN) and not inpatient and not title_like
                past = (history_open or _has(piece, HISTORY)) and not negated
                history_open = history_open or (_has(piece, LEADING_HISTORY) and not now)
                if _YEAR.search(part) and _has(piece, _EVENTS):
                    past = past or not negated  # "DVT L leg 2021", "MI in 2019": an event of a past year is over
                if past and not family and _has(piece, _INFARCTION):
                    piece = _healed_infarction(piece)
                for piece, history in _past_and_status(piece, past):
                    _add_clause(out, part, piece, evidence, negated=negated, uncertain=uncertain, history=history,
                                family=family, sentence=number,
                                stated=after_label or conclusion or bool(set(piece) & _ONLY_CONFIRMING)
                                or bool(_DIAGNOSIS_LEAD.match(sentence)))
        _share_the_side(out, number)
    if _ERADICATED.search(text):
        _cancer_is_history(out)
    return out


# A cancer excised or treated with no disease left is a personal history (Z85, guideline
# I.C.2.d): "resected 2023 ... no evidence of disease", "cancer-free since". Its spread
# ("metastatic to bone") is current, and so is a cancer still treated.
_ERADICATED = re.compile(
    r"\b(?:no\s+evidence\s+of\s+(?:disease|recurrence|residual|malignancy)|ned|(?:cancer|disease|tumou?r)[\s-]+free|"
    r"no\s+(?:local\s+)?recurrence|no\s+residual\s+(?:disease|tumou?r|cancer)|nothing\s+further\s+planned)\b",
    re.IGNORECASE)
_CANCER_WORDS = frozenset(
    """cancer carcinoma adenocarcinoma malignant malignancy melanoma sarcoma neoplasm tumor tumour ca""".split())
# a cancer's spread is current, and a screening or surveillance clause is the visit, not the cancer
_NOT_HISTORY_WORDS = frozenset(
    """metastatic metastasis metastases mets secondary spread recurrent recurrence relapse
    screening screen surveillance encounter""".split())
_TREATED_NOW = re.compile(r"\b(?:on|receiving|getting|undergoing|starting|started|cycle)\b", re.IGNORECASE)


def _cancer_is_history(clauses: list[Clause]) -> None:
    for i, c in enumerate(clauses):
        words = set(c.words)
        if (words & _CANCER_WORDS and not words & _NOT_HISTORY_WORDS
                and not (c.negated or c.uncertain or c.family)
                and not _TREATED_NOW.search(c.text)):
            clauses[i] = replace(c, history=True)


def _raw_words(text: str) -> list[str]:
    return [w.lower() for w in re.findall(r"[A-Za-z0-9']+", text)]


def _add_clause(out: list[Clause], part: str, piece: list[str], evidence: list[str], *, negated: bool,
                uncertain: bool, history: bool, family: bool, sentence: int, stated: bool) -> None:
    content = tuple(w for w in piece if w not in _ONLY_CONFIRMING)
    if not content:
        return
    prev = out[-1] if out else None
    if (prev is not None and prev.sentence == sentence and _repeats(content, prev.words)
            and (prev.negated, prev.uncertain, prev.history) == (negated, uncertain, history)):
        # "rolled my right ankle playing soccer, sprain, first visit": the sprain said again
        # is the same finding; what the repeat adds ("first visit") is said of it
        added = tuple(w for w in content if w not in prev.words)
        out[-1] = replace(prev, words=prev.words + added, text=f"{prev.text}, {part.strip()}")
        return
    out.append(
        Clause(
            text=part.strip(),
            words=content,
            negated=negated,
            uncertain=uncertain,
            history=history,
            family=family,
            evidence=tuple(evidence),
            sentence=sentence,
            diagnosis=stated,
        )
    )


_CAUSED_BY = frozenset({"from", "after", "following"})
_CUE_WORDS = frozenset(
    "history of hx h o s p status post personal past prior previous previously remote with and the a an".split()
)


def _past_and_status(piece: list[str], past: bool) -> list[tuple[list[str], bool]]:
    """A clause of the past as (words, history) parts. A lasting status in it is current and
    its own part: "breast cancer treated 6 years ago with right mastectomy" is the history of
    the cancer (Z85.3) and the breast's absence today (Z90.11)."""
    if not past:
        return [(piece, False)]
    cause = next((i for i, w in enumerate(piece) if w in _CAUSED_BY), None)
    if cause and not _has(piece[:cause], HISTORY) and not all(w in _CUE_WORDS for w in piece[:cause]):
        # "scar contracture of the right palm from a burn 2 years ago": the past is the cause;
        # what it left is current (a sequela)
        return [(piece[:cause], False), (piece[cause + 1 :], True)]
    starts = [i for i in range(len(piece)) if _starts(piece, i, _STATUS) if piece[i] in _STATUS]
    if not starts:
        return [(piece, True)]
    k = starts[0]
    cut = k - 1 if k and piece[k - 1] in ("with", "and", "s", "p") else k
    before = piece[:cut]
    if all(w in _CUE_WORDS for w in before):  # "history of a knee replacement": the status alone
        return [(piece, False)]
    return [(before, True), (piece[k:], False)]


_SIDE_WORDS = frozenset({"left", "right", "bilateral"})


def _share_the_side(clauses: list[Clause], sentence: int) -> None:
    """ "Numbness and tingling right hand, carpal tunnel": a side said once in a sentence is the
    side of its other findings too (a title without sides ignores it); never a side said of
    something negated ("Left TM normal"), and never when the sentence names two."""
    positive = [i for i, c in enumerate(clauses) if c.sentence == sentence and not (c.negated or c.family)]
    sides = {w for i in positive for w in clauses[i].words if w in _SIDE_WORDS}
    if len(sides) != 1 or len(positive) < 2:
        return
    (side,) = sides
    for i in positive:
        if not _SIDE_WORDS.intersection(clauses[i].words):
            clauses[i] = replace(clauses[i], words=(*clauses[i].words, side))


_RESOLVED = frozenset({"resolved", "cleared", "healed", "gone", "cured"})


def _closes_the_previous(piece: list[str]) -> bool:
    """A part that only says the part before it is over: "resolved", "now fully resolved with"."""
    words = [w for w in piece if w not in _COPULA and w not in ("now", "has", "have", "with", "and")]
    rest = words[1:]
    return bool(words) and words[0] in _RESOLVED and (not rest or rest[0] in ("no", "without"))


_INFARCTION = _phrases(("myocardial", "infarction"),)
# events that are over once their year has passed (a chronic disease "since 2015" is not)
_EVENTS = _phrases(("myocardial", "infarction"), ("thrombosis",), ("embolism",), ("stroke",),
                   ("cerebral", "infarction"), ("transient", "ischemic", "attack"))
# what a repeated finding may add: when, not what
_ENCOUNTER_WORDS = frozenset("initial subsequent encounter sequela first visit today".split())


def _repeats(words: tuple[str, ...], before: tuple[str, ...]) -> bool:
    """`words` names nothing that `before` did not already name."""
    named = [w for w in words if w not in _ENCOUNTER_WORDS]
    return bool(named) and set(named) <= set(before)


_TREATMENTS = frozenset({"chemotherapy", "immunotherapy", "radiotherapy", "radiation"})


def _encounter_and_its_condition(words: list[str]) -> list[list[str]]:
    """ "Encounter for antineoplastic chemotherapy for adenocarcinoma of the colon" is two
    codes, the encounter (Z51.11) and the cancer treated (C18.-): two clauses."""
    if "encounter" in words:
        for i in range(len(words) - 2):
            if words[i] in _TREATMENTS and words[i + 1] == "for":
                return [words[: i + 1], words[i + 2 :]]
    return [words]


def _healed_infarction(words: list[str]) -> list[str]:
    """ "History of MI", "s/p MI 2 years ago": a past heart attack is the old infarction
    (I25.2), a current status, not a personal history code (Z86.7- names strokes)."""
    out: list[str] = []
    for i, word in enumerate(words):
        if word == "acute":
            continue
        if word == "myocardial" and words[i + 1 : i + 2] == ["infarction"] and out[-1:] != ["old"]:
            out.append("old")
        out.append(word)
    return out


_NUMBER_WORDS = frozenset("a an one two three four five six seven eight nine ten several few couple many".split())
_DURATION_CUES = frozenset({"for", "x", "past", "last", "over", "about", "nearly", "almost", "since"})
_DURATION_UNITS = frozenset(
    "minute minutes min mins hour hours hr hrs day days week weeks wk wks month months mo year years yr yrs".split()
)


_RECENT_UNITS = frozenset("minute minutes min mins hour hours hr hrs day days week weeks wk wks".split())
_YEAR = re.compile(r"(?:19|20)\d\d")
_YEAR_CUES = frozenset({"in", "since", "from", "during", "until", "of", "back"})


def _drop_durations(words: list[str]) -> list[str]:
    """ "for three days", "x 2 weeks", "two years ago", "in 2019" say how long or when, not
    what: dropped ("born at 32 weeks" and "34 weeks pregnant" are kept)."""
    out: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        nxt = words[i + 1] if i + 1 < len(words) else ""
        after = words[i + 2] if i + 2 < len(words) else ""
        cued = (out and out[-1] in _DURATION_CUES) or after in ("ago", "duration")
        if (w.isdigit() or w in _NUMBER_WORDS) and nxt in _DURATION_UNITS and cued:
            if out and out[-1] in _DURATION_CUES:
                out.pop()
            # months or years "ago" are the past (a history cue); days or weeks ago still now
            i += 3 if after == "ago" and nxt in _RECENT_UNITS else 2
            continue
        if _YEAR.fullmatch(w) and out and out[-1] in _YEAR_CUES:
            out.pop()  # "in 2019", "since 2015": when, not what (COVID-19's title says 2019)
            i += 1
            continue
        out.append(w)
        i += 1
    return out


_IMMUNIZATION = ("encounter", "for", "immunization")
_PREVENTS = frozenset({"against", "for", "to"})


# Words of the diseases vaccines are named after ("flu shot", "hepatitis B vaccine", "Tdap").
_VACCINE_NAMES = frozenset(
    """influenza flu tetanus diphtheria pertussis tdap dtap td measles mumps rubella mmr varicella zoster
    shingles hepatitis a b pneumococcal pneumococcus covid 19 sars cov 2 polio poliomyelitis rotavirus hpv
    human papillomavirus meningococcal rabies typhoid yellow fever rsv hib""".split()
)


# A vaccine someone turned down is an immunization not carried out (Z28.2-), not one given
# (Z23); turned down by a parent or carer, it is the caregiver's refusal (Z28.82).
_REFUSED = frozenset({"refused", "refuses", "refusing", "refusal", "declined", "declines", "declining"})
_CARER = frozenset({"parent", "parents", "mother", "father", "mom", "dad", "guardian", "caregiver", "carer"})
_NOT_GIVEN = ("immunization", "not", "carried", "out", "because", "of")


def _drop_prevented(words: list[str]) -> list[str]:
    """ "Vaccination against influenza", "vaccine for shingles", "hepatitis B vaccine":
    the disease an immunization is for is one the patient does not have, and coding it
    would report that disease. What follows "against" or "for" is dropped with the rest
    of the clause, and a vaccine's name just before it. A refused vaccine is one not
    carried out, and the clause says so in the words of the Z28.2- titles."""
    for i, word in enumerate(words):
        if word not in ("immunization", "immunisation"):
            continue
        start = i - 2 if i >= 2 and tuple(words[i - 2 : i + 1]) == _IMMUNIZATION else i
        name = start
        while name > 0 and words[name - 1] in _VACCINE_NAMES:
            name -= 1
        tail = words[i + 1 :]
        if refused := _REFUSED.intersection(words):
            who = ("caregiver",) if _CARER.intersection(words) else ("patient",)
            kept = [w for w in words[:name] if w not in refused and w not in _CARER and w != "patient"]
            return [*kept, *_NOT_GIVEN, *who, "refusal"]
        prevented = bool(tail) and tail[0] in _PREVENTS
        if name == start and not prevented:
            return words  # no disease named: as written ("immunization not carried out")
        return [*words[:name], *_IMMUNIZATION, *([] if prevented else tail)]
    return words


def _parts_and_conclusion(sentence: str, lexicon: Lexicon) -> tuple[list[str], bool]:
    """The clause texts of a sentence, comma parts that only qualify joined to the part before;
    and whether the last one concludes the sentence: said after an arrow, "=" or a dash ("fever,
    chills, boggy prostate - acute prostatitis"), it is the diagnosis the findings lead to."""
    pieces = _CLAUSE.split(sentence)
    parts: list[str] = []
    separator = ""
    concluded = False
    for i, piece in enumerate(pieces):
        if i % 2 == 1:
            separator = piece
            continue
        if not piece.strip():
            continue
        dash = separator.strip() in _DASHES
        if parts and dash and _MOTHER_LEAD.match(piece.strip()):
            parts[-1] = f"{parts[-1]} {piece.strip()}"  # what the mother had is the newborn's finding's
        elif parts and (dash or separator == ",") and _only_qualifies(piece, lexicon):
            # "acute pancreatitis, lipase 1800, attributed to alcohol": a cause qualifies the
            # finding, not the measurement said between them
            target = len(parts) - 1
            while target > 0 and _CAUSE_LEAD.match(piece.strip()) and _MEASUREMENT.fullmatch(parts[target]):
                target -= 1
            parts[target] = f"{parts[target]} {piece.strip()}"
        else:
            parts.append(piece.strip())
            concluded = bool(parts[:-1]) and separator.strip() in _CONCLUDING
    return parts, concluded


_DASHES = frozenset({"-", "--", "\u2013", "\u2014"})
_CONCLUDING = _DASHES | {"->", "-->", "=>", "\u2192", "="}
_MOTHER_LEAD = re.compile(r"(?:mom|mother|maternal|mum)\b", re.IGNORECASE)  # "IDM - mom had GDM": the baby's
_CAUSE_LEAD = re.compile(r"(?:due|secondary|attributed|attributable|caused|related)\s+(?:to|by)\b", re.IGNORECASE)
_MEASUREMENT = re.compile(r"[A-Za-z][\w/]*(?:\s+[A-Za-z][\w/]*)?\s*(?:of\s+|is\s+|was\s+|=\s*|:\s*)?[<>]?\d[\d.,]*\s*%?")


def _only_qualifies(part: str, lexicon: Lexicon) -> bool:
    raw = _raw_words(part)
    if not raw:
        return False
    if raw[0] in _QUALIFIER_LEADS and len(raw) <= 6:
        return raw[0] != "not" or len(raw) <= 3
    rewritten, _ = lexicon.rewrite(part)
    if rewritten and rewritten[0] in ("with", "without") and len(rewritten) <= 4:
        return True  # "no hyperactivity" -> "without hyperactivity"
    return bool(rewritten) and all(w in QUALIFIER_WORDS for w in rewritten)


def _continues_negation(piece: list[str]) -> bool:
    # "no fever, chills or rash": a bare list after a negation stays negated
    return len(piece) <= 3 and piece[0] in ("or", "and", "nor")


_NORMAL_NAMES = frozenset({"pressure", "pregnancy", "delivery", "tension", "weight", "labor", "labour", "variant"})
_COPULA = frozenset({"was", "is", "were", "are", "been", "be", "being", "fully", "completely", "since"})
_AFTER_FILLER = frozenset(
    """on by at in with the a an biopsy imaging ct mri xray x ray scan exam examination ultrasound echo today
    testing test tests labs lab workup culture cultures cytology pathology clinically radiographically
    now currently""".split()
)


def _negation_pieces(words: list[str]) -> list[tuple[list[str], bool]]:
    """Cut a clause at its negation trigger: [(positive part, False), (negated part, True)]."""
    if "normal" in words and not _NORMAL_NAMES.intersection(words[words.index("normal") + 1 :]):
        # "Echo normal RV", "normal CXR", "EKG normal": a result said to be normal names nothing
        # ("normal pressure hydrocephalus", "normal pregnancy" are names)
        return [(words, True)]
    # "Barrett's esophagus was ruled out on biopsy", "pyelonephritis not suspected":
    # a trigger after the condition (after a copula, or with only filler after
    # it) negates what comes before it
    for i in range(1, len(words)):
        n = _starts(words, i, POST_NEGATION) if words[i] in POST_NEGATION else 0
        if not n:
            continue
        rest = words[i + n :]
        joined = bool(rest) and rest[0] in ("and", "but")  # "anticoagulation finished and no current clot"
        if words[i - 1] in _COPULA or all(w in _AFTER_FILLER for w in rest) or joined:
            before = words[: i - 1] if words[i - 1] in _COPULA else words[:i]
            if before:
                return [(before, True), *(_negation_pieces(rest[1:]) if joined and rest[1:] else [])]
    for i in range(len(words)):
        n = _starts(words, i, PRE_NEGATION) if words[i] in PRE_NEGATION else 0
        if n and not _is_qualifier(words, i):
            before, after = words[:i], words[i + n :]
            if not after:
                break  # "pneumonia was ruled out": the trigger closes the clause
            pieces = []
            if before:
                pieces.append((before, False))
            if after:
                pieces.append((after, True))
            return pieces
    return [(words, False)]


def _is_qualifier(words: list[str], i: int) -> bool:
    # "not intractable", "not specified", "not elsewhere classified" are title wording, and so is an
    # "acquired absence of" a limb (an amputation, Z89) or a "congenital absence of" one (Q71-Q73)
    nxt = words[i + 1] if i + 1 < len(words) else ""
    before = words[i - 1] if i else ""
    if words[i] == "absence":
        return before in ("acquired", "congenital")
    return words[i] == "not" and nxt in ("intractable", "specified", "elsewhere", "stated", "applicable", "otherwise")


def _starts(words: list[str], i: int, phrases: Phrases) -> int:
    """The length of the longest of `phrases` starting at words[i]; 0 if none."""
    best = 0
    for p in phrases.get(words[i], ()):
        if len(p) > best and tuple(words[i : i + len(p)]) == p:
            best = len(p)
    return best


def _has(words: list[str] | tuple[str, ...], phrases: Phrases) -> bool:
    words = list(words)
    return any(_starts(words, i, phrases) for i, w in enumerate(words) if w in phrases)
