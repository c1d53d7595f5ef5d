"""`pip install .` installs the whole product: the wheel holds every product module and data file in
git (subpackages, recipes, the server's page), and its modules import from the installed copy."""

import subprocess
import sys
import zipfile

from conftest import ROOT

PRODUCT = ("mug_errors", "torch_trainer", "serving", "convert", "trainer", "check_deployed_model")


def tracked() -> list[str]:
    """The files in git (and those added since), as the repository names them."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return [name for name in out.splitlines() if (ROOT / name).is_file()]


def test_the_wheel_holds_every_product_file(tmp_path):
    source = tmp_path / "source"
    for name in tracked():  # a copy of what git holds: nothing built or cached in the checkout counts
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((ROOT / name).read_bytes())
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [wheel] = (tmp_path / "dist").glob("find_ml6_mug-*.whl")
    inside = set(zipfile.ZipFile(wheel).namelist())
    wanted = {name for name in tracked() if name.split("/")[0] in PRODUCT and "__pycache__" not in name}
    assert any(name.endswith(".json") for name in wanted) and "check_deployed_model/server/page.html" in wanted
    assert sorted(wanted - inside) == []
    assert not any(name.startswith(("tests/", "bench/")) for name in inside)

    # installed into a folder of its own and imported from there, not from the checkout
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); "
             "from torch_trainer.settings.recipes import list_recipes, load_recipe; "
             "from check_deployed_model.server.app import PAGE; import check_deployed_model.local_server as s; "
             "assert s.__file__.startswith(sys.argv[1]), s.__file__; "
             "assert PAGE.read_text().strip() and load_recipe().models; print(len(list_recipes()))")
    proc = subprocess.run([sys.executable, "-c", probe, str(site)], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(proc.stdout) == len([n for n in wanted if n.startswith("torch_trainer/recipes/")])
