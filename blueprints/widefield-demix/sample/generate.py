"""Makes this stage's sample input: widefield-denoise run on its own sample movie.

  /usr/bin/python3 blueprints/widefield-demix/sample/generate.py

(The movie itself comes from blueprints/widefield-denoise/sample/generate.py, fixed seed.)
Writes compressed.npz here: what widefield-denoise hands to this analysis in a chain."""

import json
import os
import shutil
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
denoise = os.path.join(here, "..", "..", "widefield-denoise")
with tempfile.TemporaryDirectory() as scratch:
    out = os.path.join(scratch, "out")
    os.mkdir(out)
    config = os.path.join(scratch, "config.json")
    shutil.copy(os.path.join(denoise, "sample", "config.json"), config)
    env = {**os.environ, "NCAP_INPUT": os.path.join(denoise, "sample", "movie.npz"), "NCAP_CONFIG": config, "NCAP_OUTPUT_DIR": out}
    subprocess.run([sys.executable, "denoise.py"], cwd=os.path.join(denoise, "env"), env=env, check=True, stdout=subprocess.DEVNULL)
    shutil.copy(os.path.join(out, "compressed.npz"), os.path.join(here, "compressed.npz"))
    print(f"compressed.npz: rank {json.load(open(os.path.join(out, 'denoise.json')))['rank']}")
