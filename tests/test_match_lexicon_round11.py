"""Lexicon round 11: the acronyms and everyday names clinicians and patients use across
specialties, each found from shorthand the code titles do not spell out, over the real
shipped code data.

The matcher is conftest's `loaded_matcher` (built once per module on the session's loaded code
set); the rewrites alone are checked with the lexicon.
"""

from __future__ import annotations

import pytest

from tests.matching import rewritten as rewrite
from tests.matching import top_code as top


@pytest.mark.parametrize(
    ("text", "code"),
    [
        # cardiology: congenital defects, devices, conduction, vessels
        ("PFO found on bubble echo", "Q21.12"),
        ("VSD in a newborn", "Q21.0"),
        ("TOF s/p repair", "Q21.3"),
        ("NICM with low EF", "I42.8"),
        ("has an AICD", "Z95.810"),
        ("PPM placed for sick sinus", "Z95.0"),
        ("LVAD in place", "Z95.811"),
        ("WPW on EKG", "I45.6"),
        ("CHB with escape rhythm", "I44.2"),  # complete heart block beside a heart word
        ("HTN urgency", "I16.0"),  # not urgency of urination
        ("positive orthostatics", "I95.1"),
        ("SCAD in a young woman", "I25.42"),
        # pulmonology: respiratory failure is named by its gas
        ("AHRF requiring HFNC", "J96.01"),
        ("ACHRF on BiPAP", "J96.21"),
        ("hypercapnic respiratory failure", "J96.92"),
        ("VAP in the ICU", "J95.851"),
        ("ABPA", "B44.81"),
        # GI and liver
        ("EoE on biopsy", "K20.0"),
        ("bleeding duodenal ulcer", "K26.4"),  # chronic or unspecified, not acute
        ("perforated gastric ulcer", "K25.5"),
        ("HCC", "C22.0"),
        ("cirrhotic with SBP", "K65.2"),
        ("SIBO", "K63.8219"),
        ("transaminitis", "R74.01"),
        ("CBD stone on MRCP", "K80.50"),
        # kidney, urology and electrolytes
        ("CAUTI", "T83.511A"),
        ("RCC of the left kidney", "C64.2"),
        ("ADPKD", "Q61.2"),
        ("hyperK", "E87.5"),
        # endocrinology
        ("SIADH from SSRI", "E22.2"),
        ("MNG", "E04.2"),
        ("cushingoid on chronic steroids", "E24.2"),  # index: Cushingoid due to steroid therapy
        # hematology and oncology
        ("DCIS right breast", "D05.11"),
        ("LCIS left breast", "D05.02"),
        ("HIT", "D75.829"),
        ("MDS", "D46.9"),
        ("liver mets", "C78.7"),
        ("BRCA2 carrier", "Z15.01"),
        # infections: herpes by site, carriers, STIs, parasites
        ("cold sore HSV1", "B00.1"),
        ("HSV-2 outbreak on the labia", "A60.04"),
        ("MRSA colonized", "Z22.322"),
        ("PJP pneumonia", "B59"),
        ("gonorrhea", "A54.9"),
        ("lice in her hair again", "B85.0"),
        # neurology
        ("GBS with ascending weakness", "G61.0"),  # Guillain-Barre beside weakness, not group B strep
        ("MG on pyridostigmine", "G70.00"),
        ("NPH with magnetic gait", "G91.2"),  # the hydrocephalus beside gait words, not the insulin
        ("PHN", "B02.29"),
        ("pain after shingles on my chest", "B02.29"),
        ("TN", "G50.0"),
        ("MCI", "G31.84"),
        ("right cubital tunnel syndrome", "G56.21"),
        ("PNES", "F44.5"),
        # psychiatry and substance use
        ("meth use disorder, severe", "F15.20"),
        ("smokes weed every day", "F12.90"),  # not tobacco
        ("BPD, in DBT", "F60.3"),  # borderline beside DBT, not bronchopulmonary dysplasia
        ("bulemia", "F50.20"),
        ("SI", "R45.851"),
        # eyes
        ("chalazian left upper eyelid", "H00.14"),
        ("broken blood vessel in my left eye", "H11.32"),
        ("ocular HTN right eye", "H40.051"),
        ("PVD in the right eye", "H43.811"),  # vitreous detachment beside an eye word
        ("CRAO left eye", "H34.12"),
        ("scratched my cornea", "S05.00XA"),
        # ears, nose and throat
        ("ETD right ear", "H69.81"),
        ("eustacian tube dysfunction both ears", "H69.83"),
        ("SSNHL right ear", "H91.21"),
        ("peritonsilar abcess", "J36"),
        ("allergic to cats", "J30.81"),
        # skin
        ("HS in the groin", "L73.2"),
        ("hydradenitis", "L73.2"),
        ("SJS", "L51.1"),
        # joints and bones
        ("trochanteric bursitis right", "M70.61"),
        ("bursitis on the outside of the left hip", "M70.62"),
        ("primary OA right 1st CMC", "M18.11"),
        ("buckle fracture left distal radius", "S52.522A"),
        ("high ankle sprain", "S93.439A"),
        ("scleroderma", "M34.9"),
        # obstetrics and gynecology
        ("PPH after delivery", "O72.1"),
        ("mastitis while breastfeeding", "O91.23"),
        ("post dates at 41 weeks", "O48.0"),
        ("Mirena insertion", "Z30.430"),
        ("Nexplanon inserted", "Z30.017"),
        ("PMB", "N95.0"),
        # newborns
        ("NOWS", "P96.1"),
        ("newborn withdrawing from maternal opioids", "P96.1"),
        ("NEC in a preemie", "P77.9"),
        ("ROP stage 2 both eyes", "H35.133"),
        # injuries
        ("blood under the nail of my left thumb", "S60.112A"),
        ("bead stuck up her nose", "T17.1XXA"),
        # encounters and statuses
        ("preop eval before cataract surgery", "Z01.818"),
        ("stitches out", "Z48.02"),
        ("sleeping in her car", "Z59.02"),
        ("not enough food at home", "Z59.41"),
        ("s/p splenectomy", "Z90.81"),
        ("sports physical", "Z02.5"),
        ("hep C screening", "Z11.59"),
        # ED is the emergency department after a place word, erectile dysfunction otherwise
        ("came to ED with abdominal pain", "R10.9"),
        ("ED on sildenafil", "N52.9"),
    ],
)
def test_shorthand_and_lay_names_find_the_code(loaded_matcher, text: str, code: str) -> None:  # type: ignore[no-untyped-def]
    assert top(loaded_matcher, text) == code


def test_two_meaning_acronyms_follow_the_word_beside_them() -> None:
    assert "guillain barre" in rewrite("GBS with ascending weakness")
    assert "streptococcus" in rewrite("GBS carrier")
    assert "borderline personality" in rewrite("BPD, self harm, in DBT")
    assert "bronchopulmonary dysplasia" in rewrite("former preemie with BPD")
    assert "posterior vitreous detachment" in rewrite("PVD right eye")
    assert "posterior vitreous" not in rewrite("PVD with claudication")
    assert "atrial septal defect" in rewrite("secundum ASD")
    assert "autistic" in rewrite("ASD, speech delay")
    assert "hydrocephalus" not in rewrite("NPH insulin 20 units")


def test_ordinary_words_stay_ordinary() -> None:
    # the capital-letter acronyms leave the lower-case words alone
    assert "heparin" not in rewrite("hit by a car")
    assert "myasthenia" not in rewrite("40 mg daily")
    assert "suicidal" not in rewrite("SI joint pain")
    assert "oppositional" not in rewrite("an odd rash")
