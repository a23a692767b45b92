"""Write TF-MoDISco lite's HTML report of the patterns (Snakemake's ``script:`` of rule modisco_report), with every
matched motif's logo and the patterns' full names.

TF-MoDISco lite 3.0 (``modisco report``) draws the logo of a match only when the match's name, which is its whole
MOTIF line ("MA0035.4 GATA1"), equals the first word of that line, and names each pattern after the first 10
characters of its matches. So this job first writes the motif database with one-word motif names (the MOTIF
line's words joined by "_": "MA0035.4_GATA1"; characters that cannot be in a file name become "_") beside the
report (``motifs.meme``), then runs the report on it, in this process, with the pattern names made of the
matches' whole names. ``modisco report-simple`` (``modisco.report: simple``) gets the same database.

Run as ``python modisco_report.py MEME OUT.meme`` it only rewrites a MEME file (the tests use that).
"""

# (no `from __future__` import: Snakemake puts its preamble before the script)
import os
import re
import sys

#: characters not kept in a motif name (spaces join the words; "/" would make the logo's file name a path)
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:+()=-]+")


def one_word_names(meme_in: str, meme_out: str) -> list:
    """Copy a MEME file, giving each motif a one-word name; returns the (MOTIF line words, new name) pairs."""
    names, used = [], set()
    with open(meme_in) as src, open(meme_out, "w") as out:
        for line in src:
            if line.startswith("MOTIF"):
                words = " ".join(line[5:].split())
                name = _UNSAFE.sub("_", words.replace(" ", "_")) or "motif"
                while name in used:  # two motifs of one name would share one logo
                    name += "_"
                used.add(name)
                names.append((words, name))
                line = f"MOTIF {name}\n"
            out.write(line)
    return names


def full_names(tomtom_data: dict, top_n_matches: int = 3) -> dict:
    """Each pattern's name in the report: its (up to three) matches' whole names joined by ";", or its tag."""
    names = {}
    for tag, matches in tomtom_data.items():
        parts = [str(matches[f"match_{i}"]).strip() for i in range(min(top_n_matches, 3))
                 if matches.get(f"match_{i}") and str(matches[f"match_{i}"]).strip() != "nan"]
        names[tag] = ";".join(parts) if parts else tag
    return names


def report(h5: str, outdir: str, *, meme_db: str | None, kind: str, n_matches: int, lite: bool,
           n_examples: int) -> None:
    """The full (`modisco report`) or simple (`modisco report-simple`) report of ``h5`` in ``outdir``."""
    os.makedirs(outdir, exist_ok=True)
    db = None
    if meme_db:
        db = os.path.join(outdir, "motifs.meme")
        renamed = one_word_names(meme_db, db)
        print(f"{meme_db}: {len(renamed)} motifs, written with one-word names to {db}", flush=True)
    if kind == "simple":
        from modiscolite.report import report_motifs

        report_motifs(h5, outdir, img_path_suffix="./", meme_motif_db=db, is_writing_tomtom_matrix=False,
                      top_n_matches=n_matches, ttl=lite)
        return
    import modiscolite.descriptive_report as descriptive

    if not hasattr(descriptive, "create_descriptive_names"):
        sys.exit("this modisco-lite has no create_descriptive_names: the workflow expects modisco-lite 3.0 "
                 "(see constraints.txt)")
    descriptive.create_descriptive_names = full_names  # the whole names, not their first 10 characters
    descriptive.generate_descriptive_report(h5, outdir, img_path_suffix="./", meme_motif_db=db,
                                            top_n_matches=n_matches, ttl=lite, n_examples=n_examples)


def run_job(smk) -> None:
    p = smk.params
    with open(smk.log[0], "w") as log:
        sys.stdout = sys.stderr = log
        report(smk.input.h5, os.path.dirname(smk.output[0]), meme_db=smk.input.meme_db or None, kind=p.kind,
               n_matches=int(p.n_matches), lite=p.tomtom == "lite", n_examples=int(p.n_examples))


if "snakemake" in globals():
    run_job(snakemake)  # noqa: F821 (defined by Snakemake)
elif __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python modisco_report.py MEME OUT.meme   (the workflow runs it as a script: of a rule)")
    one_word_names(sys.argv[1], sys.argv[2])
