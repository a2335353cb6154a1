"""The matcher: text in, ranked and reportable codes out.

Order of work for one question:
1. Codes written in the text (explicit.py) are looked up first and lead the
   answer, with their status: valid, deleted (with replacements), header
   (with the default billable child) or not_found (with near codes).
2. The rest of the text is split into findings (findings.py); negated and
   uncertain ones are kept aside, history ones are searched as history codes.
3. Each positive finding, and each sentence as a whole, is searched
   (search.py); coding conventions are applied (rules.py).
4. The answer lists the codes a coder would report first, then other
   candidates, never a suppressed (negated, ruled-out, past) condition.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from consultant.match.base import Finding, MatchResult, Suggestion
from consultant.match.detail import more_specific, seventh_character_defaults
from consultant.match.explicit import Mention, find_mentions
from consultant.match.findings import Clause, split_clauses
from consultant.match.index import (
    DX,
    ICD,
    NORMAL,
    OTHER,
    PX,
    UNSPECIFIED_HEADS,
    WEAK,
    CodeIndex,
    default_child,
)
from consultant.match.lexicon import Lexicon
from consultant.match.memo import SearchMemo
from consultant.match.rules import (
    combination_codes,
    excluded_together,
    pregnancy_codes,
    same_category_allowed,
    with_symptom_sibling,
)
from consultant.match.search import Hit, make_query
from consultant.match.spelling import Speller
from consultant.match.text import STOPWORDS, Caseless, is_compound, stem, tokenize, tokens_remembered, words

MAX_CODES = 15
# Searches remembered across questions (memo.SearchMemo): a remembered one is
# exactly what `search` would return, and the same findings ("hypertension",
# "type 2 diabetes") come back question after question. 2,048 keys hold about
# 23 MB after 8,000 questions (4,096 would add a tenth to a worker's memory for
# a few points more of hits); they hold token ids and code rows, never text.
SEARCH_MEMO = 2048
DETAIL_MEMO = 20_000  # rows whose "more specific" advice is kept (a few MB; started afresh when full)
REPORT_FLOOR = 0.42  # a finding's best code below this is offered, not reported
# A clause that says what was done or planned ("Holter monitor ordered", "doxycycline started")
PLAN_TOKENS = frozenset(
    """ordered order scheduled started starting given prescribed switched placed planned plan referred referral
    consulted continued continue administered arranged booked""".split()
)
# (symptom code prefix, diagnoses that include it): the chapter 15 symptoms the guideline's
# "signs and symptoms integral to a diagnosis" rule leaves unreported beside their diagnosis
INTEGRAL_SYMPTOMS = (("O2685", ("O20", "O03", "O02", "O00")),)
ALONE_FLOOR = 0.3  # an unreported condition's score at which it leads codes that only add to it
PLAN_WORDS_MAX = 4  # ... in a clause of its own
ADDITIONAL_FLOOR = 0.3  # ... unless its "use additional code" note finds the code for the words it leaves
ENCOUNTER_TOKENS = {"initial", "subsequent", "sequela", "encounter", "routine", "delayed", "healing", "nonunion", "malunion", "open", "closed"}
SIDES = frozenset({"right", "left", "bilateral"})
SIDE_ORGANS = frozenset({"eye", "ear"})  # "left eye": the side is the point, the organ is in every candidate
SEVENTH_WORDS = {"initial", "subsequent", "sequela", "encounter"}
MODIFIER_TOKENS = {"left", "right", "bilateral", "injury", "visit", "today", "seen", "time", "yesterday", "week", "day"}
_PROCEDURE = Caseless(
    r"\b(cpt|hcpcs|pcs|procedure|surgery|injection|removal|excision|resection|biopsy|colonoscopy|endoscopy|"
    r"replacement|repair|insertion|drainage|x-?ray|mri|ct scan|ultrasound|visit code|e/m|supply|drug code)\b|\w+ectomy\b|\w+otomy\b|\w+plasty\b|\w+scopy\b")
_PROCEDURE_CODE = Caseless(r"\b(cpt|hcpcs|pcs|procedure codes?|surgery codes?|supply codes?)\b")
_PREGNANCY = Caseless(r"\b(pregnan\w*|gestation\w*|trimester|gravida|g\d\s*p\d|prenatal|antepartum|expecting|"
                      r"pre-?eclampsia|eclampsia|hyperemesis|gdm|placenta\w*|fetal|fetus|deliver\w*|hellp|previa|"
                      r"abruption|miscarriage|in\s+labou?r|p?prom|chorioamnionitis|oligohydramnios|polyhydramnios|post-?dates|cerclage|"
                      r"\d{1,2}w\d{1,2}d)\b")
# "single liveborn" alone is a delivery's outcome (Z37.0), a word of the mother's record
_NEWBORN = Caseless(
    r"\b(newborn|neonat\w*|infant|baby|twin|(?<!single )liveborn|liveborn(?=\s+(?:infant|boy|girl|male|female))|born|idm)\b"
)
# ... and so is the baby a mother delivered ("Delivered a healthy baby girl at 39 weeks"): her record
_MOTHERS_DELIVERY = re.compile(
    r"\b(?:deliver(?:ed|s|y\s+of)|gave\s+birth\s+to)\s+(?:(?:a|an|her|one|single|healthy|live|viable|term|full-term)\s+)*"
    r"(?:baby|infant|liveborn)(?:\s+(?:boy|girl))?\b",
    re.IGNORECASE,
)
# After the delivery a condition complicates the puerperium, not the pregnancy (and postpartum
# depression is F53.0 alone): no "complicating pregnancy" code is added then
_PUERPERIUM = Caseless(r"\b(postpartum|post-partum|puerper\w*|after (?:the |her )?delivery|pp day|postnatal)\b")
_CHILDBIRTH = Caseless(r"\b(deliver\w*|n?svd|c-?section|cesarean|caesarean|childbirth)\b")
# Words that put a text in chapter 15 (pregnancy) or chapter 16 (newborn) at all.
_OBSTETRIC = Caseless(
    r"\b(pregnan\w*|gestation\w*|trimester|gravid\w*|g\d\s*p\d|prenatal|antepartum|antenatal|postpartum|"
    r"puerper\w*|labou?r|deliver\w*|cesarean|caesarean|c-section|miscarr\w*|abortion|ectopic|eclampsia|"
    r"pre-?eclampsia|hyperemesis|placent\w*|fetal|fetus|amnio\w*|chorio\w*|lactat\w*|breastfeed\w*|"
    r"breast-feed\w*|obstetric\w*|childbirth|hydatidiform|molar pregnancy|expecting|weeks pregnant|"
    r"morning sickness|stillbirth|postnatal|uterine contractions)\b")
_CONGENITAL = Caseless(
    r"\b(congenital\w*|born with|birth defect|since birth|from birth|newborn|neonat\w*|infant|hereditary|inherited|"
    r"genetic|anomal\w*|malformation|(?:days?|wks?|weeks?)[- ]old)\b")  # a baby weeks old: an infant
# Words of a screening encounter (Z11-Z13 need one)
_SCREENING = Caseless(r"\b(screen\w*|mammo\w*|colonoscop\w*|pap|ldct|well[- ]?(?:child|woman|baby|visit)|routine|"
                      r"check-?\s*ups?|physicals?|annual|preventive|asymptomatic|surveillance|exposure|exposed|"
                      r"test(?:ed|ing)?\s+for)\b")
_MALIGNANCY = Caseless(
    r"\b(cancer\w*|malignan\w*|\w*carcinom\w*|tumou?rs?|neoplas\w*|\w*lymphoma\w*|leuka?emi\w*|\w*melanoma\w*|"
    r"\w*sarcoma\w*|metasta\w*|mets|\w*myeloma\w*|oncolog\w*|\w*blastoma\w*|\w*glioma\w*|seminoma\w*|"
    r"mesothelioma|carcinoid|hodgkin\w*|cll|aml|cml|mds|dcis|nsclc|sclc|hcc|rcc)\b")
# A subsequent infarction (I22) is named so, or is an infarction called "new", "second" ... itself:
# "new patient with acute MI" is a first one.
_SUBSEQUENT = Caseless(
    r"\b(?:subsequent|reinfarction|re-infarction|(?:recurrent|second|another|repeat|new)\s+(?:(?!patient|pt|with|of)[a-z-]+\s+){0,3}?"
    r"(?:mi|myocardial|infarction|infarct|stemi|nstemi|heart\s+attack))\b"
)
_INJURY = Caseless(
    r"\b(fractur\w*|broke\w*|break|crack\w*|sprain\w*|strain\w*|twist\w*|roll(?:ed)?|jamm?\w*|lacerat\w*|cut|gash|"
    r"bit(?:e|ten)|burn\w*|scald\w*|contusion|bruis\w*|injur\w*|wound\w*|trauma\w*|fell|fall\w*|dislocat\w*|"
    r"crush\w*|poison\w*|overdose\w*|sting\w*|stung|toxic|venom\w*|foreign body|splinter|abrasion|scrape\w*|"
    r"blister\w*|puncture\w*|amputat\w*|concussion|whiplash|accident\w*|collision|hit|struck|assault\w*|"
    r"frostbite|effect\w*|adverse|complication\w*|sequela\w*|late effect|encounter|pulled|tear|torn|rupture\w*|"
    r"displace\w*|subluxation|avulsion|hematoma|black eye|shot|gunshot|stab\w*|drown\w*|electr\w*|exposure)\b")
_PERINATAL = Caseless(
    r"\b(newborn|neonat\w*|infant|baby|twin|triplet|(?<!single )liveborn|liveborn(?=\s+(?:infant|boy|girl|male|female))|born|"
    r"preemie|premature|preterm|nicu|perinatal|"
    r"(?<!live )birth|fetal|fetus|days?[- ]old|(?:wks?|weeks?)[- ]old)\b")  # a live birth is the mother's outcome (Z37)
# Words of a question about a code rather than about a patient ("Is E11.9
# still valid?", "what does H40.1131 mean", "M17.11 vs M17.12 - which one"):
# beside an explicit code they are not findings.
QUESTION_WORDS = frozenset(
    """what whats which does do did mean means meaning stand code codes coding icd icd10 icd9 cm billable bill billed
    billing valid invalid still lookup look up description describe descriptor title titles correct right wrong ok okay
    fine good acceptable allowed use used using claim claims problem list please need needs help can could should would
    we i you me tell vs versus or one ones same difference between instead current currently anymore exist exists
    deleted replaced replace replacement replacements new version fy2025 fy2026 year question how many units unit
    know sure check confirm when where why work works supposed report reported reporting primary secondary
    diagnosis dx header category""".split()
)
_QUESTION_WORD = re.compile(r"[A-Za-z0-9]+")
QUESTION_CONTENT_MAX = 2  # content words beside explicit codes below which the free text is not searched
# Negated words that are too general to veto a code on their own ("no acute
# distress" must not remove acute bronchitis); they still weigh against it.
GENERIC_NEGATED = frozenset(
    """acute chronic disease disorder syndrome condition problem finding sign symptom feature new recent last month
    year week day time today kind type any other unspecified nos site part right left bilateral mild moderate severe
    history examination exam test result level change normal abnormal complication cause due current active sign
    evidence finding seen noted episode state status single multiple""".split()
)
NEEDED_ROLES = frozenset({NORMAL, WEAK, OTHER})  # title words a code needs (not "unspecified organism")
# A negated condition also rules out the titles that name its kind in other
# words ("no pneumonia": not "COPD with acute lower respiratory infection").
NEGATION_IMPLIES = {
    "pneumonia": (("lower", "respiratory", "infection"),),
    "sepsis": (("septic",), ("septicemia",)),
    "fracture": (("fractured",),),
    "malignant": (("carcinoma",), ("sarcoma",), ("lymphoma",), ("leukemia",), ("metastatic",)),
    "malignancy": (("malignant",), ("carcinoma",), ("sarcoma",), ("lymphoma",), ("leukemia",), ("metastatic",)),
    "hemorrhage": (("bleeding",),),
    "stroke": (("cerebral", "infarction"),),
    "hallucination": (("perceptual", "disturbance"),),  # alcohol withdrawal "with perceptual disturbance"
    "consciousness": (("coma",),),  # "never lost consciousness": no hypoglycemia "with coma"
    "pyelonephritis": (("infection", "kidney"),),  # no "infections of kidney in pregnancy" (O23.0-)
    "streptococcus": (("streptococcal",),),  # "rapid strep negative": no streptococcal pharyngitis
    "clot": (("thrombosis",), ("embolism",)),  # "no current clot": no acute thrombosis
    "thickness": (("third", "degree"),),  # "no full-thickness areas": no third-degree burn
    "alcohol": (("alcoholic",),),  # "denies any alcohol use": no alcoholic cirrhosis
    "tremens": (("delirium",),),  # "no DTs": no alcohol withdrawal delirium
}
_DIABETES_TYPED = Caseless(
    r"\btype\s*(?:1|2|i|ii|one|two)\b|\bt[12]\s*dm\b|\bdm\s*(?:type\s*)?[12]\b|\b(?:n?iddm)\b|\bjuvenile\b|"
    r"\binsulin[- ]dependent\b|\bdue to\b|\binduced\b|\bsecondary\b|\bgestational\b|\bpregnan|\bmody\b|"
    r"\bother specified\b|\blada\b|\blatent autoimmune\b|\bneonatal\b|\bpancreatectomy\b|\bpostprocedural\b|"
    r"\bcystic fibrosis\b|\bmother\b|\binsipidus\b|\bprediabet|\bpre[- ]diabet|\bborderline\b|\bsteroid")
# Words of how a note talks rather than of what it says ("complains of cough
# for three days"): never searched.
FILLER_TOKENS = frozenset(
    """complain complaint present presenting presentation report reported day yesterday today ago since tonight
    noted note seen visit came come here currently notice noticed started start x days hours man woman boy girl
    lady gentleman guy gal who pack xray ray ct mri scan imaging ultrasound biopsy labs lab test testing culture
    cultures grew growing only feeling feel feels felt known some""".split()
)
HISTORY_WORDS = frozenset(
    """history personal family hx h o past previous previously prior mother father mom dad sister brother son
    daughter grandmother grandfather aunt uncle sibling parent she he has had remote childhood treated ago year
    month""".split()
)
MANIFESTATION = 0.75  # score factor for a manifestation code ("in diseases classified elsewhere")
OUT_OF_CONTEXT = 0.6
UNSTATED_SIDE = 0.85  # score factor for a sided code when the text names no side
NOT_STATED_CONGENITAL = 0.8  # "congenital ..." titles for a text that does not say so  # score factor for a pregnancy or newborn code in a text about neither
# A clause naming only a part of the body says where, not what.
ANATOMY_TOKENS = frozenset(
    tokenize(
        """head face neck chest thorax abdomen belly back spine pelvis hip thigh knee leg calf ankle foot toe heel
        shoulder arm elbow forearm wrist hand finger thumb eye ear nose mouth throat lung heart kidney liver
        bladder skin scalp brain breast trunk limb upper lower shows showed show revealed reveals demonstrated
        film films view views study findings result results adult child patient male female year old lobe lobes
        lobar middle palm sole fingertip scalp lip cheek chin forehead temple eyelid jaw gum tongue tooth groin
        buttock flank rib armpit navel knuckle instep arch side wall colon sigmoid rectum cecum ascending
        descending transverse stomach esophagus duodenum bowel intestine uterus cervix prostate thyroid pancreas
        gallbladder spleen"""
    )
)
# A clause naming only an organism ("UTI due to E. coli" -> "E. coli", findings.py) says what
# caused another finding: B95-B97, "as the cause of diseases classified elsewhere"; said
# alone, the organism's infection of unspecified site (A49) as well. Never a disease of its
# own ("MRSA" is not "Pneumonia due to MRSA"): a title naming one is found for the sentence.
ORGANISM_TOKENS = frozenset(
    tokenize(
        """methicillin resistant susceptible sensitive staphylococcus staphylococcal aureus streptococcus
        streptococcal group a b escherichia coli pseudomonas aeruginosa klebsiella pneumoniae proteus mirabilis
        enterococcus enterococcal helicobacter pylori haemophilus influenzae mycoplasma bacteroides fragilis
        due to caused by secondary from with positive for"""
    )
)
ORGANISM_CAUSE = ("B95", "B96", "B97")
ORGANISM_ALONE = ("A49", *ORGANISM_CAUSE)
ORGANISM_AFTER = 0.3  # rank taken off an organism's code beside the condition it caused
DIAGNOSIS_BONUS = 0.3  # rank bonus for a code the note states as its assessment
FULL_NAME = 0.85  # title coverage at which a code's name counts as said in full
RESIDUAL_SHARE = 0.1
RESIDUAL_WEIGHT = 5.0  # ... or this much weight (one fairly rare word) left over in a long clause
# words that qualify a condition already coded: left over, they are no finding of their own
RESIDUAL_QUALIFIERS = frozenset(
    """exacerbation intractable uncomplicated complicated complication persistent intermittent recurrent controlled
    uncontrolled stable worsening improving flare resolved resolving remission relapse onset early late mild
    moderate severe initial subsequent sequela with without more one multiple several single""".split()
)  # unexplained share of a clause's weight that is searched again
_WITHOUT_STOPS = frozenset(
    {"type", "stage", "grade", "with", "and", "left", "right", "bilateral", "in", "due", "without", "not"}
)
_NOT_DIABETES_MELLITUS = frozenset({"insipidus", "prediabetes", "gestational", "mother", "newborn", "neonatal"})
TITLE_READ, TITLE_SIDED, TITLE_CONGENITAL, TITLE_MANIFESTATION = 1, 2, 4, 8  # CodeMatcher._flags
# What a code needs the text to be about (CodeMatcher._in_context): chapter 15 a pregnancy,
# chapter 16 and Z38 a newborn, an ICD-10-CM injury or poisoning code (S, T) an injury, a
# C code a malignancy, I22 a subsequent infarction. One of these at most: a number kept in
# the flags' high four bits.
NEEDS_PREGNANCY, NEEDS_NEWBORN, NEEDS_INJURY, NEEDS_MALIGNANCY, NEEDS_SUBSEQUENT, NEEDS_SCREENING = 16, 32, 48, 64, 80, 96
TITLE_NEEDS = 0xF0
_NEEDS = {NEEDS_PREGNANCY: "pregnancy", NEEDS_NEWBORN: "newborn", NEEDS_INJURY: "injury",
          NEEDS_MALIGNANCY: "malignancy", NEEDS_SUBSEQUENT: "subsequent", NEEDS_SCREENING: "screening"}
# "34 weeks", "32 wks", "39+2 weeks", "39w2d"
_WEEKS = re.compile(r"\b(\d{1,2})\s*(?:\+\s*\d\s*)?(?:(?:weeks?|wks?)\b|w(?=\d{1,2}d\b))", re.IGNORECASE)
_PREGNANT_ONLY = frozenset({"pregnancy", "gestation", "week", "weeks", "currently", "intrauterine", "iup"})
_WEEKS_SAID = re.compile(_WEEKS.pattern + r"(?:\s*\+?\s*\d\s*d(?:ays?)?\b)?", re.IGNORECASE)  # "41w3d", "34 weeks 2 days"


@dataclass
class _Candidate:
    row: int
    score: float
    rank_key: float
    report: bool
    evidence: list[str] = field(default_factory=list)
    more_specific: str = ""
    sources: set = field(default_factory=set)  # the findings that report it (see _free_text)


class CodeMatcher:
    """The production matcher over an in-memory `CodeIndex`."""

    def __init__(self, index: CodeIndex, lexicon: Lexicon) -> None:
        self.index = index
        self.lexicon = lexicon
        self._side_cache: dict[tuple[int, str], int | None] = {}
        self._searches = SearchMemo(index, SEARCH_MEMO)
        self._titles: dict[int, list[tuple[str, int]]] = {}
        self._row_flags = bytearray(len(index))  # see _flags
        self._details: dict[int, str] = {}  # see _more_specific
        self._weak_ids = frozenset(tid for word, tid in index.vocab.items() if _weak_alone(word))
        self._speller = Speller(index.vocab)

    # ------------------------------------------------------------ public

    def match(self, text: str) -> MatchResult:
        with tokens_remembered():
            return self._match(text or "")

    def _match(self, text: str) -> MatchResult:
        self._titles = {}  # titles read once per question
        mentions = find_mentions(text)
        explicit = self._explicit(mentions, text)
        free_text = _strip_mentions(text, mentions)
        if explicit:
            # A question about the codes it names ("Is E11.9 still valid?"):
            # its question words are not findings, and with little else the
            # answer is the named codes and their status only.
            kept = [w for w in words(free_text) if w not in QUESTION_WORDS]
            content = [w for w in kept if stem(w) not in STOPWORDS and not w.isdigit()]
            # the question words go; the sentences and their punctuation stay (a negation ends with its clause)
            free_text = _QUESTION_WORD.sub(_drop_question_word, free_text) if len(content) > QUESTION_CONTENT_MAX else ""
        findings, candidates = self._free_text(free_text, has_explicit=bool(explicit))
        seen = {(s.system, s.code) for s in explicit}
        codes = list(explicit)
        for cand in candidates:
            sug = self._suggestion(cand)
            if (sug.system, sug.code) in seen:
                continue
            seen.add((sug.system, sug.code))
            codes.append(sug)
            if len(codes) >= MAX_CODES:
                break
        return MatchResult(codes=tuple(codes), findings=tuple(findings))

    # ------------------------------------------------------------ explicit codes

    def _explicit(self, mentions: list[Mention], text: str) -> list[Suggestion]:
        out: list[Suggestion] = []
        by_start: dict[int, list[Mention]] = {}
        for m in mentions:
            by_start.setdefault(m.start, []).append(m)
        for start in sorted(by_start):
            group = by_start[start]
            readings = self._readings(group, text)
            if not readings:
                if all(m.weak for m in group):
                    continue  # a bare number the code set does not have: no code
                mention = _preferred(group)
                if mention.system == ICD and not re.search(r"\bcode|\bicd", text, re.IGNORECASE) and (
                    len(mention.key) <= 3 or self.index.row(ICD, mention.key[:3]) is None
                ):
                    # a bare word-like token, or one of no category ("C1D1", cycle 1 day 1): not a code
                    continue
                out.append(self._not_found(mention))
                continue
            for row, mention in readings:
                out.extend(self._explicit_row(row, mention))
        return out

    def _readings(self, group: list[Mention], text: str) -> list[tuple[int, Mention]]:
        """The codes a written token can be, best first: the system the text names beside it
        alone; otherwise every system that has it ("g0439" is HCPCS G0439 and ICD-10-CM G04.39),
        the one whose title shares more of the question's words first, ICD-10-CM on a tie."""
        found = []
        for m in group:
            row = self.index.row(m.system, m.key)
            if row is None and m.system == ICD:
                row = self._pad_placeholder(m.key)
            if row is not None:
                found.append((row, m))
        if any(m.weak and m.system == ICD for _, m in found):
            found = [(row, m) for row, m in found if m.weak]  # "E78 5" is E78.5, not the category E78
        hinted = [(row, m) for row, m in found if m.hinted]
        if hinted:
            return hinted[:1]
        if len(found) < 2:
            return found
        said = set(tokenize(text)) - set(tokenize(" ".join(m.raw for m in group)))
        return sorted(found, key=lambda f: (-len(said.intersection(tokenize(self.index.official[f[0]]))),
                                            f[1].system != ICD))

    def _pad_placeholder(self, key: str) -> int | None:
        # S161A written for S16.1XXA
        if len(key) < 7 and key[-1:].isalpha() and len(key) >= 4:
            padded = key[:-1] + "X" * (7 - len(key)) + key[-1]
            return self.index.row(ICD, padded)
        return None

    def _explicit_row(self, row: int, mention: Mention) -> list[Suggestion]:
        idx = self.index
        evidence = (f"written in the question as {mention.raw}",)
        if idx.status[row] == "deleted":
            repl = tuple(self._display(idx.system[row], k) for k in idx.replaced_by[row])
            out = [self._make(row, status="deleted", score=1.0, evidence=evidence, replaced_by=repl, report=False)]
            for key in idx.replaced_by[row][:6]:
                r = idx.row(idx.system[row], key)
                if r is not None and idx.status[r] == "valid":
                    out.append(self._make(r, score=0.9, evidence=(f"replaces {idx.display[row]}",), report=False))
            return out
        if not idx.billable[row]:
            child = default_child(idx, row)
            out = [
                self._make(
                    row, status="header", score=1.0, evidence=evidence, report=False,
                    more_specific=f"a header, not billable: choose a code below it ({_join(self._more_specific(child)) if child is not None else 'see the tabular'})",
                )
            ]
            if child is not None:
                out.append(
                    self._make(
                        child, score=0.9, evidence=(f"default code under {idx.display[row]}",),
                        more_specific=_join(
                            f"{idx.display[child]} is the default under {idx.display[row]}",
                            self._more_specific(child),
                        ),
                    )
                )
            return out
        return [self._make(row, score=1.0, evidence=evidence)]

    def _not_found(self, mention: Mention) -> Suggestion:
        near = self._near(mention)
        display = _display_guess(mention)
        return Suggestion(
            code=display, system=mention.system, status="not_found", score=0.0, confidence=0.0,
            billable=False, near=tuple(near), evidence=(f"{mention.raw} is not in the loaded {mention.system} code set",),
            report=False,
        )

    def _near(self, mention: Mention) -> list[str]:
        idx = self.index
        key = mention.key
        for cut in range(len(key) - 1, 2, -1):
            rows = idx.rows_for(key[:cut], mention.system)
            if rows:
                leaves = [r for r in idx.billable_descendants(rows[0])] or rows
                return [idx.display[r] for r in leaves[:5]]
        return []

    # ------------------------------------------------------------ free text

    def _free_text(self, text: str, *, has_explicit: bool) -> tuple[list[Finding], list[_Candidate]]:
        bmi = _bmi_code(text)
        if bmi is not None:
            text = _BMI.sub(" ", text)  # the number is coded by _bmi_code, never matched as a word
        text = _MOTHERS_DELIVERY.sub("delivered a single liveborn", text)
        pregnancy = _PREGNANCY.found(text) and not _NEWBORN.found(text)
        weeks = _weeks(text) if pregnancy else None
        if weeks is not None:
            text = _WEEKS_SAID.sub(" ", text)  # coded as Z3A and the trimester, never matched as words
        clauses = split_clauses(text, self.lexicon)
        if not clauses:
            return [], []
        idx = self.index
        group = PX if _PROCEDURE_CODE.found(text) else DX
        # Encounter words ("first visit") said anywhere choose 7th characters
        # everywhere, but never match titles of their own (see search.Query.ext).
        encounter = {t for c in clauses if not c.negated for t in tokenize(" ".join(c.words)) if t in ENCOUNTER_TOKENS}
        extra: set[str] = set()
        if weeks is not None and not _CHILDBIRTH.found(text):
            # the trimester picks a pregnancy's codes; a delivery's are "complicating childbirth"
            extra |= {str(_trimester(weeks)), "trimester"}
        if _NEWBORN.found(text):
            extra.add("newborn")
        rewritten = " ".join(w for c in clauses for w in c.words)
        default_type2 = not _DIABETES_TYPED.found(text) and not _DIABETES_TYPED.found(rewritten)
        context = frozenset(
            name for name, pattern in (("pregnancy", _OBSTETRIC), ("newborn", _PERINATAL), ("congenital", _CONGENITAL),
                                       ("injury", _INJURY), ("screening", _SCREENING))
            if pattern.found(text) or pattern.found(rewritten)
        )
        # a subsequent infarction is one said, not one denied ("no recurrent chest pain, no new infarct")
        said = " ".join(w for c in clauses if not (c.negated or c.uncertain) for w in c.words)
        if _SUBSEQUENT.found(said):
            context |= {"subsequent"}
        # a screening's own words ("screening colonoscopy": "... for malignant neoplasm of colon")
        # name the disease looked for, not one found
        unscreened = " ".join(w for c in clauses if "screening" not in c.words for w in c.words)
        if _MALIGNANCY.found(text) or _MALIGNANCY.found(unscreened):
            context |= {"malignancy"}

        neg_tokens: set[str] = set()
        for c in clauses:
            if c.negated or c.uncertain:
                neg_tokens.update(tokenize(" ".join(c.words)))
        positive_tokens: set[str] = set()
        history_tokens: set[str] = set()
        for c in clauses:
            toks = tokenize(" ".join(c.words))
            if not (c.negated or c.uncertain or c.history or c.family):
                positive_tokens.update(toks)
            elif c.history or c.family:
                history_tokens.update(toks)
        neg_tokens -= positive_tokens
        # a negated condition's own words ("no pneumonia", "without bleeding"):
        # no code that needs one is offered
        hard_neg = (neg_tokens | _without_tokens(clauses)) - GENERIC_NEGATED - ENCOUNTER_TOKENS - MODIFIER_TOKENS
        idf = idx.idf[group]

        def weight(tokens) -> float:
            return sum(idf[idx.vocab[t]] for t in tokens if t in idx.vocab)

        total_weight = weight(positive_tokens) or 1.0

        findings: list[Finding] = []
        suppressed: set[int] = set()
        cands: dict[int, _Candidate] = {}

        def offer(hit: Hit, key: float, source, evidence: list[str]) -> None:
            cur = cands.get(hit.row)
            if cur is None:
                cur = cands[hit.row] = _Candidate(hit.row, hit.score, key, False, evidence)
            elif key > cur.rank_key:
                cur.score, cur.rank_key, cur.evidence = hit.score, key, evidence
            if source is not None:
                cur.sources.add(source)

        sentences: dict[int, list[tuple[int, Clause]]] = {}
        clause_tops: dict[int, Hit] = {}
        for number, c in enumerate(clauses):
            if c.negated or c.uncertain:
                for part in _parts(c.words):
                    for h in self._search(part, group=group, extra=extra, encounter=encounter)[:3]:
                        if h.score >= 0.45:
                            suppressed.add(h.row)
                findings.append(Finding(text=c.text, negated=c.negated, uncertain=c.uncertain, codes=()))
                continue
            if c.history and not c.family and _substance_dependence(c.words):
                # a history of alcohol or drug dependence is coded as the
                # dependence "in remission" (guideline I.C.5.b.1), not as a Z code
                past = tuple(w for w in c.words if w not in HISTORY_WORDS) + ("in", "remission")
                hits = self._search(past, group=DX, extra=extra, encounter=encounter)
                if hits and hits[0].score >= REPORT_FLOOR:
                    offer(hits[0], 1.0 + hits[0].score * 0.5, ("c", number), [f"history of dependence: {c.text}"])
                    findings.append(Finding(text=c.text, history=True, codes=(idx.display[hits[0].row],)))
                    continue
            if c.history or c.family:
                if not set(tokenize(" ".join(c.words))) - HISTORY_WORDS:
                    continue  # "Mother has" before "no diabetes": nothing of its own
                current = self._search(c.words, group=group, extra=extra, encounter=encounter)
                for h in current[:2]:
                    if h.score >= 0.5 and not _is_history(idx, h.row):
                        suppressed.add(h.row)
                prefix = ("family", "history", "of") if c.family else ("personal", "history", "of")
                past = tuple(w for w in c.words if w not in ("acute", "recent", "current", "active"))
                # a history code that explains nothing the clause says ("quit 10 years ago" is no
                # "personal history of other specified conditions") is no answer
                own = {idx.vocab[t] for t in tokenize(" ".join(past)) if t in idx.vocab and t not in HISTORY_WORDS}
                hits = [h for h in self._search(prefix + past, group=DX, extra=extra, encounter=encounter, limit=60)
                        if _is_history(idx, h.row) and h.matched & own]
                codes = []
                for h in hits[:3]:
                    top = h is hits[0] and h.score >= 0.5
                    offer(h, 0.6 + h.score * 0.3, ("c", number) if top else None, [f"history: {c.text}"])
                    codes.append(idx.display[h.row])
                findings.append(Finding(text=c.text, history=True, codes=tuple(codes[:1])))
                continue
            said = set(tokenize(" ".join(c.words)))
            content = said - ENCOUNTER_TOKENS - MODIFIER_TOKENS - FILLER_TOKENS
            if (not content or content <= ANATOMY_TOKENS) and not ("injury" in said and content):
                # "first visit for this injury" (applied to every finding already);
                # "chest x-ray shows" before "no pneumonia": a place, not a finding.
                # "Knee injury" names the site of one: a finding.
                continue
            if weeks is not None and content <= _PREGNANT_ONLY:
                continue  # "18 weeks pregnant": the weeks' Z3A code says it (and the trimester every O-code's)
            sentences.setdefault(c.sentence, []).append((number, c))
            wide = self._search(c.words, group=group, extra=extra, encounter=encounter, neg=neg_tokens,
                                default_type2=default_type2, context=context, limit=60)
            hits = wide[:12]
            # an organism's code is listed after the condition it caused, and so is a drug's adverse effect
            cause = ORGANISM_AFTER if c.words[:3] == ("adverse", "effect", "of") else 0.0
            if content <= ORGANISM_TOKENS:
                alone = not any(o is not c and not (o.negated or o.uncertain) for o in clauses)
                hits = [h for h in wide if idx.key[h.row].startswith(ORGANISM_ALONE if alone else ORGANISM_CAUSE)][:12]
                cause = 0.0 if alone else ORGANISM_AFTER
                prev = clauses[number - 1] if number else None
                if prev is not None and prev.sentence == c.sentence and not (prev.negated or prev.uncertain or prev.history):
                    # the condition just before, named by this organism ("sepsis due to E. coli" -> A41.51),
                    # however much else the sentence says
                    both = self._search(prev.words + c.words, group=group, extra=extra, encounter=encounter,
                                        neg=neg_tokens, default_type2=default_type2, context=context)
                    if both and both[0].score >= 0.55 and not idx.key[both[0].row].startswith(ORGANISM_ALONE):
                        mine = {idx.vocab[t] for t in content if t in idx.vocab}
                        theirs = {idx.vocab[t] for t in tokenize(" ".join(prev.words)) if t in idx.vocab}
                        if both[0].matched & mine and both[0].matched & theirs:
                            offer(both[0], 1.0 + both[0].score * 0.5, ("c", number - 1),
                                  [f"'{prev.text}' due to '{c.text}'"])
            if "screening" in c.words:
                # a screening is coded as the screening (Z11-Z13), never as the disease looked for
                hits = [h for h in hits if "screening" in idx.official[h.row].lower()]
            codes = []
            clause_weight = weight([t for t in tokenize(" ".join(c.words)) if t not in FILLER_TOKENS])
            stated = (DIAGNOSIS_BONUS if c.diagnosis else 0.0) - cause  # the assessment leads the answer
            plan = len(c.words) <= PLAN_WORDS_MAX and not PLAN_TOKENS.isdisjoint(c.words)
            for n, h in enumerate(hits[:8]):
                # reported: a good score, or one of the code's names said in
                # full among other words ("postmenopausal ... osteoporosis")
                top = n == 0 and (h.score >= REPORT_FLOOR or (h.dcov >= FULL_NAME and h.explained >= 0.35 * clause_weight))
                if plan and not top:
                    continue  # "Holter monitor ordered", "IVIG given": a plan's near misses are no alternatives
                offer(h, (1.0 + stated if top else 0.0) + h.score * 0.5 + h.explained / total_weight * 0.5,
                      ("c", number) if top else None, [f"'{c.text}'"] + list(c.evidence))
                if n == 0:
                    clause_tops[number] = h
                    codes.append(idx.display[h.row])
            # "Use additional code" asked for by the best code (E11.22 -> the
            # CKD stage N18.-; I13.0 -> the heart failure I50.-): the clause's
            # words left over are searched among the codes the note names.
            main = clause_tops.get(number)
            if main is not None and (main.score >= ADDITIONAL_FLOOR or main.dcov >= FULL_NAME):
                refs = _additional_refs(idx, main.row)
                # a stage the best code's title spans ("stage 1 through stage 4") is still the
                # additional code's to say (I12.9 with CKD stage 4 -> N18.4)
                left = {t for t in tokenize(" ".join(c.words))} - {
                    t for t in map(self._token, main.matched) if not is_compound(t)}
                left -= FILLER_TOKENS
                if refs != ("\0",) and any(t in idx.vocab for t in left):
                    extra_hits = [
                        h for h in wide
                        if idx.key[h.row].startswith(refs) and idx.key[h.row][:3] != idx.key[main.row][:3]
                        and {self._token(t) for t in h.matched} & left
                    ]
                    if extra_hits and extra_hits[0].score >= 0.3:
                        h = extra_hits[0]
                        if ("c", number) not in cands[main.row].sources:
                            # the pair says what the clause says ("DM2 with a chronic ulcer of the right
                            # great toe": E11.621 and the ulcer's site and depth, L97.51-): both reported
                            offer(main, 1.0 + stated + main.score * 0.5 + main.explained / total_weight * 0.5,
                                  ("c", number), [f"'{c.text}'"] + list(c.evidence))
                        offer(h, cands[main.row].rank_key - 0.005, ("c", number, "additional"),
                              [f"'{c.text}'", f"{idx.display[main.row]}: use additional code"])
                        codes.append(idx.display[h.row])
            # Explain away: words the best code leaves unexplained ("cough and
            # fever", "heart failure ... and CKD stage 3b") are searched again,
            # up to twice, as findings of their own.
            rest = [t for t in tokenize(" ".join(c.words)) if t not in FILLER_TOKENS and t not in ENCOUNTER_TOKENS]
            for round_ in (1, 2, 3):
                if not hits:
                    break
                done = {self._token(t) for t in hits[0].matched}
                rest = [t for t in rest if t not in done]
                content = [t for t in rest if t not in MODIFIER_TOKENS and t not in ENCOUNTER_TOKENS
                           and t not in GENERIC_NEGATED and t not in RESIDUAL_QUALIFIERS
                           and t not in ANATOMY_TOKENS and t in idx.vocab]
                if not content or weight(content) < min(RESIDUAL_SHARE * clause_weight, RESIDUAL_WEIGHT):
                    break
                hits = self._search(tuple(rest), group=group, extra=extra, encounter=encounter, neg=neg_tokens,
                                    default_type2=default_type2, context=context)
                if "screening" in c.words:
                    hits = [h for h in hits if "screening" in idx.official[h.row].lower()]
                if not hits or not hits[0].matched & {idx.vocab[t] for t in content}:
                    break
                if not (hits[0].score >= REPORT_FLOOR or
                        (hits[0].dcov >= FULL_NAME and hits[0].explained >= 0.35 * weight(rest))):
                    break
                h = hits[0]
                main = clause_tops.get(number)
                integral = (
                    main is not None and idx.key[h.row][0] == "R" and idx.key[main.row][0] != "R"
                    and not idx.key[h.row].startswith(_additional_refs(idx, main.row))
                )
                # a symptom left over beside a diagnosis ("gastroenteritis with
                # vomiting") is part of it: offered, not reported
                main_key = cands[main.row].rank_key if main is not None and main.row in cands else 2.0
                offer(h, min(1.0 + h.score * 0.5 + h.explained / total_weight * 0.5, main_key) - 0.01 * round_,
                      None if integral else ("c", number, round_), [f"'{c.text}'"] + list(c.evidence))
                codes.append(idx.display[h.row])
            findings.append(Finding(text=c.text, codes=tuple(codes)))

        # Each sentence as a whole: joins "twin" with "delivered by cesarean",
        # and "Osteoarthrosis, localized, primary, lower leg" into one title.
        # When one code explains nearly all of the sentence, the clauses it
        # explains are not reported on their own.
        absorbed: set = set()
        for number, group_clauses in sentences.items():
            if len(group_clauses) < 2:
                continue
            words = tuple(w for _, c in group_clauses for w in c.words)
            hits = self._search(words, group=group, extra=extra, encounter=encounter, neg=neg_tokens,
                                default_type2=default_type2, context=context)
            if not hits:
                continue
            sentence_tokens = set(tokenize(" ".join(words))) - ENCOUNTER_TOKENS
            first = hits[0]
            matched_tokens = {self._token(t) for t in first.matched}
            coverage = weight(matched_tokens & sentence_tokens) / (weight(sentence_tokens) or 1.0)
            joined = sum(bool(matched_tokens & set(tokenize(" ".join(c.words)))) for _, c in group_clauses)
            if joined < 2:
                continue  # its best code speaks for one clause only: that clause's own search did
            whole = first.score >= 0.55 and coverage >= 0.7
            for n, h in enumerate(hits[:5]):
                top = n == 0 and h.score >= 0.55
                offer(h, (1.0 if top else 0.0) + h.score * 0.5 + h.explained / total_weight * 0.5,
                      ("s", number) if top else None, ["the sentence as a whole"])
            if whole:
                wanted = _additional_refs(idx, first.row)
                for clause_number, c in group_clauses:
                    toks = set(tokenize(" ".join(c.words))) - ENCOUNTER_TOKENS - MODIFIER_TOKENS
                    own = clause_tops.get(clause_number)
                    if own is not None and (own.row == first.row or idx.key[own.row].startswith(wanted)
                                            or idx.key[first.row].startswith(_additional_refs(idx, own.row))):
                        # the same code, or one the whole code's note asks to add, or one whose note
                        # asks for the whole code (E11.621's "use additional code" for the ulcer, L97.-)
                        continue
                    if weight(toks & matched_tokens) >= 0.5 * weight(toks):
                        absorbed.add(("c", clause_number))

        if bmi is not None and idx.row(ICD, bmi) is not None:
            for row in [r for r in cands if idx.key[r].startswith("Z68")]:
                del cands[row]  # the number decides the BMI code
            row = idx.row(ICD, bmi)
            cands[row] = _Candidate(row, 0.9, 1.4, True, ["body mass index stated"], sources={("b", 0)})
        if weeks is not None:
            row = idx.row(ICD, f"Z3A{weeks:02d}") if 8 <= weeks <= 42 else None
            if row is not None:
                cands[row] = _Candidate(row, 0.9, 1.5, True, [f"{weeks} weeks of gestation"], sources={("w", 0)})

        if group == DX and _PROCEDURE.found(text):
            words = tuple(w for c in clauses if not (c.negated or c.uncertain) for w in c.words)
            for h in self._search(words, group=PX, extra=set())[:3]:
                if h.score >= 0.5:
                    cands.setdefault(h.row, _Candidate(h.row, h.score, h.score * 0.2, False, ["procedure words in the text"]))
        for cand in cands.values():
            cand.report = bool(cand.sources - absorbed)
            if cand.sources and not cand.report:
                cand.rank_key -= 1.0  # a clause the sentence's code explains is not a finding of its own
            if idx.key[cand.row][0] in "VWXY" and idx.system[cand.row] == ICD:
                # external causes (V00-Y99) are never the first-listed code: offered after the injury
                cand.report = False
                cand.rank_key -= 0.6
        self._apply_rules(cands, positive_tokens)
        if (pregnancy and not _PUERPERIUM.found(text)
                and any(_PREGNANCY.found(c.text) for c in clauses if not (c.negated or c.history or c.family))):
            self._in_pregnancy(cands, weeks)
        for row in suppressed:
            if row in cands and not cands[row].evidence[:1] == ["combination"]:
                del cands[row]
        implied = [phrase for t in hard_neg for phrase in NEGATION_IMPLIES.get(t, ())]
        if hard_neg:
            for row in list(cands):
                cand = cands[row]
                if cand.evidence[:1] == ["combination"] or _is_history(idx, row):
                    continue
                title = self._title_tokens(row)
                needed = {t for t, role in title if role in NEEDED_ROLES}
                vetoed = needed & hard_neg
                if vetoed and vetoed <= self._said_absent(row):
                    continue  # "Attention deficit disorder without mention of hyperactivity" (F90.0)
                if vetoed or any(set(phrase) <= needed for phrase in implied):
                    del cands[row]
        if any(idx.key[c.row].startswith("E10") and c.report for c in cands.values()):
            for cand in cands.values():
                if idx.key[cand.row] == "Z794":
                    cand.report = False  # insulin use is implied by type 1 diabetes (guideline I.C.4.a.3)
        if pregnancy:
            # the mother's record: a perinatal code (P00-P96) is the newborn's, never hers
            # ("HELLP at 34 wks" is no preterm newborn of 34 weeks)
            for row in [r for r in cands if idx.system[r] == ICD and idx.key[r].startswith("P")]:
                del cands[row]
        if "newborn" in extra and not _PREGNANCY.found(text):
            # a newborn's weeks are its gestational age (P07.-), never the mother's weeks of gestation (Z3A)
            for row in [r for r in cands if idx.system[r] == ICD and idx.key[r].startswith("Z3A")]:
                del cands[row]
        if _healed_infarct_only(clauses):
            # "history of MI" is the old infarct (I25.2), never an acute or subsequent one
            for row in [r for r in cands if idx.system[r] == ICD and idx.key[r].startswith(("I21", "I22"))]:
                del cands[row]
        if default_type2:
            for cand in cands.values():
                if idx.key[cand.row].startswith("E11") and idx.system[cand.row] == ICD:
                    cand.more_specific = "the type of diabetes (type 2 is the default when the type is not stated)"
        ranked = sorted(cands.values(), key=lambda c: (-int(c.report), -c.rank_key))
        self._dedupe_report(ranked)
        # external causes (V00-Y99) follow every diagnosis code, and the codes that only add to
        # another (weeks of gestation, long-term drugs, BMI, an organism) follow the condition
        ranked.sort(key=lambda c: (-int(c.report), _supplementary(idx.key[c.row], c.report), -c.rank_key))
        if ranked and all(_supplementary(idx.key[c.row], True) == 1 for c in ranked if c.report):
            # only codes that add to another were reported ("cerclage in place, 19 wks": Z3A.19):
            # the condition they add to is the best other candidate, listed first
            condition = next((c for c in ranked if not c.report and _supplementary(idx.key[c.row], True) == 0
                              and c.score >= ALONE_FLOOR), None)
            if condition is not None:
                condition.report = True
                ranked.remove(condition)
                ranked.insert(0, condition)
        self._one_external_cause_each(ranked)
        text_tokens = set(tokenize(rewritten))
        for cand in ranked[:MAX_CODES]:
            cand.more_specific = _join(
                self._more_specific(cand.row), cand.more_specific,
                *seventh_character_defaults(idx.official[cand.row], text_tokens),
            )
        return findings, ranked

    def _token(self, token_id: int) -> str:
        return self.index.titles.words[token_id]  # a vocab word has the same number there

    def _said_absent(self, row: int) -> frozenset[str]:
        """Words one of the code's names (an inclusion term) says the code is without."""
        fam = self.index.family_of.get(row)
        return self.index.said_absent.get(-(fam + 1) if fam is not None else row, frozenset())

    def _title_tokens(self, row: int) -> list[tuple[str, int]]:
        """`title_roles` of the row's title (precomputed in the index)."""
        got = self._titles.get(row)
        if got is None:
            got = self._titles[row] = self.index.titles[row]
        return got

    def _search(self, words, *, group: str, extra: set[str], encounter: set[str] = frozenset(),
                neg: set[str] = frozenset(), default_type2: bool = False,
                context: frozenset[str] | None = None, limit: int = 12) -> Sequence[Hit]:
        tokens = [self._speller.correct(t) for t in tokenize(" ".join(words)) if t not in FILLER_TOKENS]
        local_neg = set(neg)
        local_neg.update(_negated_in_clause(words) - set(tokenize(" ".join(_outside_negations(words)))))
        joined = " ".join(words)
        ext = [t for t in encounter if t not in tokens]
        if "encounter for" not in joined:
            # "initial encounter" picks a 7th character; it is not a title word
            seventh = SEVENTH_WORDS | ({"closed", "open"} if "fracture" in tokens else set())
            ext += [t for t in tokens if t in seventh]
            tokens = [t for t in tokens if t not in seventh]
        if default_type2 and "diabetes" in tokens and not set(tokens) & _NOT_DIABETES_MELLITUS:
            tokens += ["type", "2"]
        tokens = tokens + [t for t in extra if t not in tokens]
        neg_ids = (set(neg) - set(tokens)) | local_neg
        # a stated side picks among codes of one kind; it never outweighs an
        # unstated kind ("glaucoma in both eyes" is H40.9, not a bilateral
        # secondary glaucoma)
        sides = SIDES.intersection(tokens)
        light = SIDE_ORGANS if sides else ()
        query = make_query(self.index, tokens, neg=sorted(neg_ids), group=group, ext=ext, light=light)
        if not sides and group == DX:
            # the rules below read nothing but the hits and the context: remembered with the search
            return self._explained_by_words(self._searches.hits(query, limit, then=lambda hits: self._unstated_side(
                hits if context is None else self._in_context(hits, context)), then_key=("unsided", context)))
        hits = self._searches.hits(query, limit)
        if context is not None:
            hits = self._in_context(hits, context)
        if len(sides) == 1 and group == DX:
            hits = self._stated_side(hits, next(iter(sides)))
        if sides and group == DX and hits:
            hits = self._unstated_kind(hits, tokens, neg_ids, group, ext, context, limit)
        return self._explained_by_words(hits)

    def _explained_by_words(self, hits: Sequence[Hit]) -> Sequence[Hit]:
        """A code that explains nothing of the text but a number, a side or a trimester ("EF 25%" is not
        25 weeks of gestation, "IOP 25 OU" no bilateral anything) is no answer."""
        weak = self._weak_ids
        if not any(h.matched <= weak for h in hits):
            return hits
        return [h for h in hits if not h.matched <= weak]

    def _unstated_kind(self, hits: Sequence[Hit], tokens: list[str], neg_ids, group: str, ext, context,
                       limit: int) -> list[Hit]:
        """A stated side never picks a kind the text does not give: "cataract right eye" is H26.9
        (no sided code exists for a cataract of no stated kind), not an age-related cataract of the
        right eye. When the best code is sided and needs words the text lacks, the same search
        without the side is tried; its best code wins when it is unsided and needs no unstated word."""
        idx = self.index
        top = hits[0]
        if idx.key[top.row][0] in "STVWXYZ":
            return hits
        title = self._title_tokens(top.row)
        if not SIDES.intersection(t for t, _ in title):
            return hits
        stated = set(tokens)
        # a weak word ("primary") is the tabular's default kind, not an unstated one
        # nor is a site word ("Lateral epicondylitis, right elbow" for "tennis elbow right")
        if not any(role in (NORMAL, OTHER) and t not in stated and t not in SIDES and t not in UNSPECIFIED_HEADS
                   for t, role in title):
            return hits
        plain = [t for t in tokens if t not in SIDES and t not in SIDE_ORGANS and t not in ("both", "eyes", "ears")]
        if not plain:
            return hits
        query = make_query(self.index, plain, neg=sorted(neg_ids), group=group, ext=ext)
        alt = self._searches.hits(query, limit)
        if context is not None:
            alt = self._in_context(alt, context)
        if not alt or alt[0].score < 0.6:
            return hits
        best = alt[0]
        btitle = self._title_tokens(best.row)
        if SIDES.intersection(t for t, _ in btitle) or "unspecified" in {t for t, _ in btitle} - stated and any(
                t in UNSPECIFIED_HEADS and role != NORMAL for t, role in btitle):
            return hits  # the unspecified-side sibling ("unspecified elbow") never beats a stated side
        if any(role in NEEDED_ROLES and t not in stated for t, role in btitle):
            return hits
        best = Hit(row=best.row, score=max(best.score, top.score), matched=best.matched, alias=best.alias,
                   explained=best.explained, dcov=best.dcov)
        return [best] + [h for h in hits if h.row != best.row]

    def _unstated_side(self, hits: list[Hit]) -> list[Hit]:
        """A text that names no side does not get a right or left code over an unsided one."""
        out = []
        for h in hits:
            if self._flags(h.row) & TITLE_SIDED:
                h = Hit(row=h.row, score=round(h.score * UNSTATED_SIDE, 4), matched=h.matched, alias=h.alias,
                        explained=h.explained, dcov=h.dcov)
            out.append(h)
        out.sort(key=lambda h: -h.score)
        return out

    def _in_context(self, hits: list[Hit], context: frozenset[str]) -> list[Hit]:
        """Chapter 15 codes need a pregnancy, chapter 16 codes a newborn, Z38 a birth, S and T
        codes an injury or poisoning, C codes a malignancy, I22 a subsequent infarction:
        without one in the text they fall behind the other codes."""
        out = []
        for h in hits:
            flags = self._flags(h.row)
            need = _NEEDS.get(flags & TITLE_NEEDS, "")
            factor = OUT_OF_CONTEXT if need and need not in context else 1.0
            if "congenital" not in context and flags & TITLE_CONGENITAL:
                factor *= NOT_STATED_CONGENITAL
            elif "congenital" in context and "adult" in self.index.official[h.row].lower():
                factor *= OUT_OF_CONTEXT  # an infant's pyloric stenosis is no "adult hypertrophic" one
            if flags & TITLE_MANIFESTATION:
                factor *= MANIFESTATION  # "... in diseases classified elsewhere": code first the disease
            if factor != 1.0:
                h = Hit(row=h.row, score=round(h.score * factor, 4), matched=h.matched, alias=h.alias,
                        explained=h.explained * factor, dcov=h.dcov)
            out.append(h)
        out.sort(key=lambda h: -h.score)
        return out

    def _flags(self, row: int) -> int:
        """TITLE_SIDED, TITLE_CONGENITAL, TITLE_MANIFESTATION and what context the code needs
        (TITLE_NEEDS), read once per process."""
        flags = self._row_flags[row]
        if not flags:
            title = self.index.official[row].lower()
            flags = TITLE_READ
            key = self.index.key[row]
            if key[0] == "O":
                flags |= NEEDS_PREGNANCY
            elif key[0] == "P" or key.startswith("Z38"):
                flags |= NEEDS_NEWBORN
            elif key[0] in "ST" and self.index.system[row] == ICD:
                flags |= NEEDS_INJURY  # an injury or poisoning code for a text that names none falls behind
            elif key[0] == "C" and self.index.system[row] == ICD:
                flags |= NEEDS_MALIGNANCY  # a cancer for a text that names none ("a polyp in the sigmoid colon")
            elif key.startswith("I22"):
                flags |= NEEDS_SUBSEQUENT  # an MI within four weeks of another: never the first one
            elif key.startswith(("Z11", "Z12", "Z13")) and self.index.system[row] == ICD:
                flags |= NEEDS_SCREENING  # "active pulmonary TB" is the disease, not a screening for it
            if SIDES.intersection(t for t, _ in self.index.titles[row]):
                flags |= TITLE_SIDED
            if "congenital" in title:
                flags |= TITLE_CONGENITAL
            if "in diseases classified elsewhere" in title:
                flags |= TITLE_MANIFESTATION  # "... in diseases classified elsewhere": code first the disease
            self._row_flags[row] = flags
        return flags

    def _stated_side(self, hits: list[Hit], side: str) -> list[Hit]:
        """A text that states the side never gets the "unspecified side" code when a sided sibling exists."""
        out, seen = [], set()
        for n, h in enumerate(hits):
            if n < 6 and "unspecified" in self.index.official[h.row].lower():
                sided = self._side_sibling(h.row, side)
                if sided is not None:
                    h = Hit(row=sided, score=h.score, matched=h.matched, alias=h.alias, explained=h.explained,
                            dcov=h.dcov)
            if h.row not in seen:
                seen.add(h.row)
                out.append(h)
        return out

    def _side_sibling(self, row: int, side: str) -> int | None:
        key = (row, side)
        if key in self._side_cache:
            return self._side_cache[key]
        idx = self.index
        found = None
        parent = idx.row(ICD, idx.parent[row]) if idx.parent[row] else None
        up = idx.row(ICD, idx.parent[parent]) if parent is not None and idx.parent[parent] else None
        for top in (parent, up):
            if top is None or found is not None:
                continue
            leaves = idx.billable_descendants(top)
            if len(leaves) > 400:
                continue
            for leaf in leaves:
                if len(idx.key[leaf]) != len(idx.key[row]) or idx.key[leaf][6:] != idx.key[row][6:]:
                    continue
                if self._same_but_side(row, leaf, side):
                    found = leaf
                    break
        self._side_cache[key] = found
        return found

    def _side_free(self, row: int) -> frozenset[str]:
        return frozenset(t for t, _ in self._title_tokens(row) if t not in SIDES and t not in ("unspecified", "side"))

    def _same_but_side(self, row: int, other: int, side: str) -> bool:
        """`other` is `row` with its unspecified side (and the part it names) stated as `side`."""
        mine = {t for t, _ in self._title_tokens(row)}
        theirs = {t for t, _ in self._title_tokens(other)}
        if side not in theirs:
            return False
        return theirs - mine <= SIDES and mine - theirs <= UNSPECIFIED_HEADS | {"unspecified", "side"}

    def _apply_rules(self, cands: dict[int, _Candidate], positive_tokens: set[str]) -> None:
        idx = self.index
        reported = [idx.key[c.row] for c in cands.values() if c.report and idx.system[c.row] == ICD]
        found = [idx.key[c.row] for c in cands.values() if idx.system[c.row] == ICD]
        for key, replaces, why in combination_codes(idx, reported, positive_tokens, found):
            row = idx.row(ICD, key)
            for c in cands.values():
                k = idx.key[c.row]
                if c.report and k.startswith(replaces) and k != key and not k.startswith("N18") and not k.startswith("I50"):
                    if replaces == "I1" or k[:3] == key[:3]:
                        c.report = False
            cands[row] = _Candidate(row, 0.95, 2.0, True, ["combination", why])
            if key.startswith("O244") and key[-1] in "45":
                for c in cands.values():
                    if idx.key[c.row] in ("Z794", "Z7984"):
                        c.report = False
        # a symptom a reported diagnosis includes: spotting in early pregnancy is the bleeding of
        # the threatened abortion (O20.-: "hemorrhage in early pregnancy"), not a condition of its own
        reported_keys = {idx.key[c.row] for c in cands.values() if c.report and idx.system[c.row] == ICD}
        for symptom, diagnoses in INTEGRAL_SYMPTOMS:
            if any(k.startswith(diagnoses) for k in reported_keys):
                for c in cands.values():
                    if c.report and idx.key[c.row].startswith(symptom):
                        c.report = False
                        c.rank_key -= 1.0
        # "Use additional code" on a sibling: BPH (N40.0) reported beside nocturia
        # (R35.1) becomes BPH with lower urinary tract symptoms (N40.1), whose
        # note asks for the symptom code; the symptom stays.
        reported_rows = [c.row for c in cands.values() if c.report and idx.system[c.row] == ICD]
        for cand in list(cands.values()):
            if not cand.report or idx.system[cand.row] != ICD:
                continue
            sibling = with_symptom_sibling(idx, cand.row, [idx.key[r] for r in reported_rows if r != cand.row])
            if sibling is None:
                continue
            row, because = sibling
            cand.report = False
            new = cands.get(row)
            if new is None:
                new = cands[row] = _Candidate(row, cand.score, cand.rank_key + 0.01, True, [])
            new.report, new.rank_key = True, max(new.rank_key, cand.rank_key + 0.01)
            new.evidence = [f"{idx.display[cand.row]} with {because}: its note asks for that code as well"]

    def _in_pregnancy(self, cands: dict[int, _Candidate], weeks: int | None) -> None:
        """A pregnant patient's conditions get their chapter 15 code, listed just before them."""
        idx = self.index
        trimester = None if weeks is None else _trimester(weeks)
        reported = {idx.key[c.row]: c for c in cands.values() if c.report and idx.system[c.row] == ICD}
        for key, condition, why in pregnancy_codes(idx, list(reported), trimester):
            row = idx.row(ICD, key)
            if row in cands and cands[row].report:
                continue
            base = reported[condition]
            cands[row] = _Candidate(row, base.score, base.rank_key + 0.01, True, [why], sources=set(base.sources))

    def _one_external_cause_each(self, ranked: list[_Candidate]) -> None:
        """External causes are optional extras: the best code of a category (of Y92's places, of
        W01's falls) is offered and its siblings are not, so a nursing home or a fall never crowds
        the diagnoses' alternatives out."""
        idx = self.index
        shown: set[str] = set()
        kept: list[_Candidate] = []
        for cand in ranked:
            category = idx.key[cand.row][:3]
            if category[0] in "VWXY" and idx.system[cand.row] == ICD:
                if category in shown:
                    continue
                shown.add(category)
            kept.append(cand)
        ranked[:] = kept

    def _dedupe_report(self, ranked: list[_Candidate]) -> None:
        idx = self.index
        kept: list[_Candidate] = []
        for c in ranked:
            if not c.report:
                continue
            key = idx.key[c.row]
            for n, k in enumerate(kept):
                r = k.row
                other = idx.key[r]
                if excluded_together(idx, r, c.row) or (
                    other[:3] == key[:3] and not same_category_allowed(key) and idx.system[r] == idx.system[c.row]
                ):
                    if (other[:3] == key[:3] and _unspecified(idx.official[r]) and not _unspecified(idx.official[c.row])) or (
                        other[0] == "R" and key[0] != "R" and idx.system[r] == ICD
                    ):
                        # "anxiety, dx: GAD": the code that says more is reported, not the unspecified one;
                        # "fever, swollen hands -> Kawasaki disease": a symptom its excluded diagnosis explains
                        k.report = False
                        kept[n] = c
                    else:
                        c.report = False
                    break
            else:
                kept.append(c)

    # ------------------------------------------------------------ output

    def _suggestion(self, cand: _Candidate) -> Suggestion:
        more = cand.more_specific or self._more_specific(cand.row)
        return self._make(
            cand.row, score=round(min(1.0, cand.score), 4), evidence=tuple(cand.evidence[:4]),
            report=cand.report, more_specific=more,
        )

    def _make(self, row: int, *, score: float, evidence=(), status: str | None = None, replaced_by=(), report=True,
              more_specific: str = "") -> Suggestion:
        idx = self.index
        st = status or ("valid" if idx.status[row] == "valid" and idx.billable[row] else idx.status[row])
        return Suggestion(
            code=idx.display[row], system=idx.system[row], status=st, score=score,
            confidence=round(score if st == "valid" else 0.0, 4), official=idx.official[row], plain=idx.plain[row],
            billable=idx.billable[row] and st == "valid", release=idx.release[row], replaced_by=tuple(replaced_by),
            evidence=tuple(evidence), more_specific=more_specific, new=idx.change[row] == "new", report=report,
        )

    def _more_specific(self, row: int) -> str:
        """`detail.more_specific`, worked out once per row: it reads nothing but the index."""
        said = self._details.get(row)
        if said is None:
            if len(self._details) >= DETAIL_MEMO:
                self._details.clear()
            said = self._details[row] = more_specific(self.index, row)
        return said

    def _display(self, system: str, key: str) -> str:
        row = self.index.row(system, key)
        return self.index.display[row] if row is not None else key


def _negated_in_clause(words) -> set[str]:
    """Words a clause states as absent: "without X", "not intractable", "not in remission",
    "unspecified as acute or chronic" (every "without" phrase ends at a qualifier)."""
    out: set[str] = set()
    words = list(words)
    for i, w in enumerate(words):
        if w == "without":
            after = []
            for nxt in words[i + 1 :]:
                if nxt in _WITHOUT_STOPS or nxt.isdigit() or len(after) == 3:
                    break
                if nxt not in ("mention", "of", "or"):
                    after.append(nxt)
            out.update(tokenize(" ".join(after)))
        elif w == "not" and i + 1 < len(words) and words[i + 1] not in ("elsewhere", "otherwise"):
            # "not intractable", "not in remission", "not specified as recurrent"
            rest = [x for x in words[i + 1 : i + 5] if x not in ("in", "specified", "stated", "as", "having")]
            out.update(tokenize(" ".join(rest[:1])))
        elif w == "as" and i > 0 and words[i - 1] == "unspecified":
            out.update(tokenize(" ".join(x for x in words[i + 1 : i + 4] if x != "or")))
    return out


_SUBSTANCES = frozenset({"alcohol", "opioid", "cannabis", "cocaine", "sedative", "stimulant", "hallucinogen",
                         "inhalant", "amphetamine", "heroin", "drug", "alcoholism"})


def _substance_dependence(words) -> bool:
    """Dependence or abuse of alcohol or drugs (not nicotine: its history is Z87.891)."""
    toks = set(tokenize(" ".join(words)))
    return bool(toks & _SUBSTANCES) and bool(toks & {"dependence", "abuse", "use", "alcoholism"}) and "nicotine" not in toks


def _without_tokens(clauses: list[Clause]) -> set[str]:
    """The words a positive clause says it is without ("reflux esophagitis without bleeding"),
    less the words it also states ("migraine ... without intractable migraine")."""
    out: set[str] = set()
    for c in clauses:
        if c.negated or c.uncertain:
            continue
        absent = _negated_in_clause(c.words)
        if absent:
            out.update(absent - set(tokenize(" ".join(_outside_negations(c.words)))))
    return out


def _outside_negations(words) -> list[str]:
    """The words of a clause that no "without" or "not" governs."""
    out, skip = [], 0
    for w in words:
        if w in ("without", "not"):
            skip = 3
            continue
        if skip and w not in _WITHOUT_STOPS:
            skip -= 1
            continue
        skip = 0
        out.append(w)
    return out


def _additional_refs(index: CodeIndex, row: int) -> tuple[str, ...]:
    """Code prefixes the "use additional code" notes of `row` and its ancestors ask for."""
    refs: list[str] = []
    for r in [row, *index.ancestors(row)]:
        refs.extend(index.use_additional.get(r, ()))
    return tuple(refs) or ("\0",)


# Codes reported only beside another, never first-listed: weeks of gestation (Z3A), long-term
# drug therapy (Z79), BMI (Z68), the outcome of delivery (Z37), an infectious agent (B95-B97)
SUPPLEMENTARY = ("Z3A", "Z79", "Z68", "Z37", "B95", "B96", "B97")


def _supplementary(key: str, reported: bool) -> int:
    """2 for an external cause (V00-Y99), 1 for a reported supplementary code, 0 for the rest
    (an alternative keeps its place among the alternatives)."""
    return 2 if key[0] in "VWXY" else 1 if reported and key.startswith(SUPPLEMENTARY) else 0


def _weak_alone(token: str) -> bool:
    return token.isdigit() or token in SIDES or token == "trimester"


def _drop_question_word(m: re.Match[str]) -> str:
    return "" if m.group(0).lower() in QUESTION_WORDS else m.group(0)


def _join(*parts: str) -> str:
    return "; ".join(dict.fromkeys(p for p in parts if p))


def _strip_mentions(text: str, mentions: list[Mention]) -> str:
    for m in mentions:
        text = text.replace(m.raw, " ")
    return re.sub(r"\b(icd[- ]?10[- ]?(cm|pcs)?|icd[- ]?9|cpt|hcpcs|code)\b", " ", text, flags=re.IGNORECASE)


def _preferred(group: list[Mention]) -> Mention:
    for m in group:
        if m.hinted:
            return m
    for m in group:
        if m.system == ICD:
            return m
    return group[0]


def _display_guess(m: Mention) -> str:
    if m.system == ICD and len(m.key) > 3:
        return f"{m.key[:3]}.{m.key[3:]}"
    return m.key


def _parts(words: tuple[str, ...]) -> list[tuple[str, ...]]:
    """A negated list cut at its joins: "pe and no effusion" -> (pe), (effusion)."""
    parts: list[tuple[str, ...]] = []
    cur: list[str] = []
    for w in words:
        if w in ("and", "or", "no", "nor", "not"):
            if cur:
                parts.append(tuple(cur))
            cur = []
        else:
            cur.append(w)
    if cur:
        parts.append(tuple(cur))
    if len(parts) > 1:
        parts.append(tuple(words))
    return parts


_BMI = re.compile(r"\bbmi\b\s*(?:of|is|was|=|:)?\s*(\d{2}(?:\.\d+)?)", re.IGNORECASE)
_CHILD = re.compile(r"\b(child|pediatric|paediatric|percentile|boy|girl|year-old|years? old|yo)\b", re.IGNORECASE)


def _unspecified(title: str) -> bool:
    return "unspecified" in title.lower()


def _healed_infarct_only(clauses: list[Clause]) -> bool:
    """An old myocardial infarction is said, and no other one."""
    old = new = False
    for c in clauses:
        if c.negated or c.uncertain or c.family:
            continue
        for i in range(len(c.words) - 1):
            if c.words[i] == "myocardial" and c.words[i + 1] == "infarction":
                if i and c.words[i - 1] == "old":
                    old = True
                else:
                    new = True
    return old and not new


def _bmi_code(text: str) -> str | None:
    """Z68.- for an adult body mass index stated as a number (children's BMI is a percentile)."""
    m = _BMI.search(text)
    if m is None:
        return None
    age = re.search(r"\b(\d{1,2})[- ]?(?:year|yr)s?[- ]?old\b|\b(\d{1,2})\s*yo\b", text, re.IGNORECASE)
    if age and int(age.group(1) or age.group(2)) < 20:
        return None
    if age is None and _CHILD.search(text) and "adult" not in text.lower():
        return None
    value = float(m.group(1))
    if value < 20:
        return "Z681"
    if value < 40:
        return f"Z68{int(value)}" if value >= 25 else "Z6820" if value < 21 else f"Z682{int(value) - 20}"
    for limit, key in ((45, "Z6841"), (50, "Z6842"), (60, "Z6843"), (70, "Z6844")):
        if value < limit:
            return key
    return "Z6845"


def _trimester(weeks: int) -> int:
    """The trimester the weeks of gestation fall in (14 and 28 weeks begin the second and third)."""
    return 3 if weeks >= 28 else 2 if weeks >= 14 else 1


def _weeks(text: str) -> int | None:
    m = _WEEKS.search(text)
    return int(m.group(1)) if m else None


def _is_history(index: CodeIndex, row: int) -> bool:
    key = index.key[row]
    return "history" in index.official[row].lower() or key.startswith(("Z85", "Z86", "Z87", "Z80", "Z81", "Z82", "Z83", "Z84", "I252"))


def _mostly_diagnosis(text: str) -> bool:
    return bool(re.search(r"\b(icd|diagnos\w*|dx)\b", text, re.IGNORECASE))
