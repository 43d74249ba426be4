#!/usr/bin/env python
"""The setup guide's entry point; the same flags as `python -m fetchers`.

    python scripts/download_data.py --reorganize-imagenet /path/ILSVRC2012_img_val.tar
    python scripts/download_data.py --siglip2 | --clip | --imagenet-map | --coco | --all
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fetchers.__main__ import run  # noqa: E402

if __name__ == "__main__":
    sys.exit(run())
