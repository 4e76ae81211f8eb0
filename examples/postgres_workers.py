"""Three workers on one PostgreSQL study: the way to use many GPUs or machines.

Starts a search with 'nas-sampler search', then two more processes join it with 'nas-sampler worker';
each would run on its own machine in practice. Prints trials per generation and checks that every
genotype is distinct.
    python examples/postgres_workers.py [postgresql+psycopg2://user@host:5432/database]
"""

import subprocess
import sys
import time
from collections import Counter

import optuna
import sqlalchemy as sa

from nas_sampler import GeneticCellSampler

url = sys.argv[1] if len(sys.argv) > 1 else "postgresql+psycopg2://postgres@127.0.0.1:5432/nas_sampler_examples"
name = "postgres-workers-example"

# the database must exist; create it on first use
server, database = url.rsplit("/", 1)
engine = sa.create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
with engine.connect() as conn:
    if not conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": database}).first():
        conn.execute(sa.text(f'CREATE DATABASE "{database}"'))
engine.dispose()
optuna.logging.set_verbosity(optuna.logging.WARNING)
storage = optuna.storages.RDBStorage(url)
if name in optuna.get_all_study_names(storage):
    optuna.delete_study(study_name=name, storage=storage)  # this example's own study, from an earlier run

cli = [sys.executable, "-m", "nas_sampler.cli"]
first = subprocess.Popen(
    [*cli, "search", "--preset", "smoke", "--storage", url, "--study", name, "--population", "6", "--trials", "18",
     "--batch-size", "8"],
    stderr=subprocess.DEVNULL,
)  # fmt: skip
while name not in optuna.get_all_study_names(storage):
    time.sleep(0.5)
workers = [subprocess.Popen([*cli, "worker", "--storage", url, "--study", name], stderr=subprocess.DEVNULL)
           for _ in range(2)]  # fmt: skip
codes = [p.wait() for p in [first, *workers]]

study = optuna.load_study(study_name=name, storage=storage)
done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
sampler = GeneticCellSampler(population_size=6)  # the search's own population size
generations = Counter(sampler.get_trial_generation(study, t) for t in done)
genotypes = [t.user_attrs["genotype"] for t in done]
print("exit codes:", codes)
print(f"{len(done)} trials complete; per generation: {dict(sorted(generations.items()))}")
print(f"distinct genotypes: {len(set(genotypes))} of {len(genotypes)}")
assert codes == [0, 0, 0] and len(set(genotypes)) == len(genotypes)
