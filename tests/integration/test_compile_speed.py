"""Precompiled headers and the compile cache: faster compiles that answer exactly as before."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from backend.executors.local import precompiled as pch
from backend.runtimes import CXX_FLAGS, JAVAC_JVM_FLAGS
from backend.testing import ServerProcess
from tests.conftest import Client

CXX = pch.default_cxx()
needs_cxx = pytest.mark.skipif(CXX is None, reason="no g++ here")

# A template error inside the standard library: its include chain is where a compile through
# a precompiled header words its diagnostics differently.
BROKEN = """#include <bits/stdc++.h>
using namespace std;
struct P { int x; };
int main() { set<P> s; s.insert(P{1}); vector<int> v; v.push_back("x"); return 0 }
"""
WARNS = """#include <bits/stdc++.h>
int main() { int x = 1 << 40; std::cout << x << "\\n"; }
"""


def _hello(tag: str) -> str:
    return f'#include <bits/stdc++.h>\nint main() {{ std::cout << "{tag}" << std::endl; }}\n'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess({"MAX_CONCURRENT_JOBS": "4", "COMPILE_CACHE_BYTES": str(64 << 20)}) as s:
        yield s


@pytest.fixture(scope="module")
def plain_server() -> Iterator[ServerProcess]:
    """Neither precompiled headers nor a cache: the reference answers."""
    with ServerProcess({"MAX_CONCURRENT_JOBS": "2", "SANDBOX_PCH_DIR": "", "COMPILE_CACHE_BYTES": "0"}) as s:
        yield s


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Client:
    return Client(server.url)


@pytest.fixture(scope="module")
def plain(plain_server: ServerProcess) -> Client:
    return Client(plain_server.url)


def _unique(code: str) -> str:
    """A program no earlier test (or earlier run of this suite) compiled: the cache cannot answer it."""
    return f"// {uuid.uuid4()}\n{code}"


# ---------------------------------------------------------------- precompiled headers

@needs_cxx
def test_health_shows_precompiled_headers(client: Client, plain: Client) -> None:
    sandbox = client.get("/health").json()["sandbox"]
    assert sandbox["precompiled_headers"] and sandbox["compile_cache"] is True
    assert sandbox["javac_archive"] or pch.default_binary("java", "javac") is None
    plain_box = plain.get("/health").json()["sandbox"]
    assert plain_box["precompiled_headers"] is None and plain_box["javac_archive"] is None


JAVA_BROKEN = """import java.util.*;
public class Main { public static void main(String[] a) { List<int> x = new ArrayList<>(); undefined(); } }
"""
JAVA_WARNS = """import java.util.*;
public class Main { public static void main(String[] a) { List raw = new ArrayList(); raw.add(1); System.out.println(raw); } }
"""


@pytest.mark.parametrize(("language", "code", "name"), [
    ("c++", BROKEN, "main.cpp"), ("c++", WARNS, "main.cpp"), ("java", JAVA_BROKEN, "Main.java"),
    ("java", JAVA_WARNS, "Main.java"),
], ids=["c++-error", "c++-warning", "java-error", "java-warning"])
def test_diagnostics_identical_with_and_without_precompiled(client: Client, plain: Client, language: str,
                                                            code: str, name: str) -> None:
    if language == "c++" and CXX is None:
        pytest.skip("no g++ here")
    # Same file name and content on both: the diagnostics name the file.
    fast = client.execute(language, code, name=name)
    slow = plain.execute(language, code, name=name)
    assert fast["compile"]["stderr"], "the program must produce diagnostics"
    for field in ("stdout", "stderr", "output", "code", "status"):
        assert fast["compile"][field] == slow["compile"][field], field
    assert fast["run"]["stdout"] == slow["run"]["stdout"]


@needs_cxx
def test_pch_really_used_by_the_sandboxed_compile(client: Client) -> None:
    # -H lists headers on stderr; "!" marks a precompiled one. Checked with the runtime's own flags.
    directory = client.get("/health").json()["sandbox"]["precompiled_headers"]
    code = '#include <bits/stdc++.h>\nint main(){}\n'
    flags = " ".join(CXX_FLAGS)
    script = f"printf '{code}' > a.cpp; g++ {flags} -I {directory} -H -fsyntax-only a.cpp 2>&1 | head -1"
    out = client.execute("bash", script)["run"]["stdout"]
    assert out.startswith(f"! {directory}/bits/stdc++.h.gch"), out


def test_javac_archive_really_used_by_the_sandboxed_compile(client: Client) -> None:
    archive = client.get("/health").json()["sandbox"]["javac_archive"]
    if archive is None:
        pytest.skip("no javac here")
    flags = " ".join(f"-J{f}" for f in (*JAVAC_JVM_FLAGS, f"-XX:SharedArchiveFile={archive}", "-Xlog:class+load"))
    script = f"echo 'class A {{}}' > A.java; javac {flags} A.java | grep -c '{pch.JAVAC_MAIN_CLASS} source: shared'"
    assert client.execute("bash", script)["run"]["stdout"] == "1\n"


@needs_cxx
def test_pch_is_read_only_in_the_sandbox(client: Client) -> None:
    directory = client.get("/health").json()["sandbox"]["precompiled_headers"]
    run = client.execute("bash", f"echo junk > {directory}/bits/stdc++.h.gch; echo rc=$?")["run"]
    assert "rc=0" not in run["stdout"]


@needs_cxx
def test_header_for_other_flags_is_never_used(tmp_path: Path) -> None:
    assert CXX is not None
    root = str(tmp_path / "pch")
    built = pch.build(root, CXX, CXX_FLAGS)
    assert pch.valid(built, CXX, CXX_FLAGS)
    # Swap in a header precompiled for other flags: GCC would not take it, and neither does the check.
    gch = built / "bits" / "stdc++.h.gch"
    gch.chmod(0o644)
    result = subprocess.run([CXX, "-std=gnu++14", "-O0", "-x", "c++-header", pch._dependencies(CXX, CXX_FLAGS,
                             "bits/stdc++.h")[0], "-o", str(gch)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert not pch.valid(built, CXX, CXX_FLAGS)
    # A different flag set lives in a different directory; the service rebuilds what is invalid.
    assert pch.set_dir(root, CXX, ("-std=gnu++14", "-O2")) != built
    again = pch.prepare(root, CXX, CXX_FLAGS, may_build=True)
    assert again == built and pch.valid(built, CXX, CXX_FLAGS)
    # Without permission to build, an invalid set is ignored.
    (built / "manifest.json").chmod(0o644)
    (built / "manifest.json").write_text("{}")
    assert pch.prepare(root, CXX, CXX_FLAGS, may_build=False) is None


# ---------------------------------------------------------------- compile cache

@needs_cxx
def test_second_identical_compile_is_cached(client: Client) -> None:
    code = _unique(_hello("cached"))
    first = client.execute("c++", code)
    second = client.execute("c++", code)
    assert "cached" not in first["compile"]
    assert second["compile"]["cached"] is True
    for field in ("stdout", "stderr", "code", "status"):
        assert second["compile"][field] == first["compile"][field]
    assert first["run"]["stdout"] == second["run"]["stdout"] == "cached\n"


@needs_cxx
def test_failed_compiles_are_not_cached(client: Client) -> None:
    code = _unique(BROKEN)
    for _ in range(2):
        body = client.execute("c++", code)
        assert body["compile"]["code"] == 1 and "cached" not in body["compile"]


@needs_cxx
def test_one_byte_apart_never_share_an_entry(client: Client) -> None:
    a = _unique(_hello("A"))
    b = a.replace('"A"', '"B"')
    assert len(a) == len(b) and sum(x != y for x, y in zip(a, b, strict=True)) == 1
    assert client.execute("c++", a)["run"]["stdout"] == "A\n"
    body = client.execute("c++", b)
    assert "cached" not in body["compile"] and body["run"]["stdout"] == "B\n"
    # Names are part of the key too.
    renamed = client.execute("c++", a, name="other.cpp")
    assert "cached" not in renamed["compile"] and renamed["run"]["stdout"] == "A\n"


@needs_cxx
def test_a_run_cannot_swap_the_cached_artifact(client: Client, server: ServerProcess) -> None:
    # The run overwrites its own a.out and tries the cache directory itself; the next identical
    # submission still runs the compiled program.
    tag = uuid.uuid4().hex
    cache_dir = Path(server._env.get("SANDBOX_STATE_DIR", "/tmp/piston-state")) / "compile-cache"
    code = (f'#include <bits/stdc++.h>\nint main() {{ std::cout << "{tag}" << std::endl;\n'
            '  std::ofstream("a.out", std::ios::trunc) << "#!/bin/sh\\necho swapped\\n";\n'
            f'  std::cout << (std::ofstream("{cache_dir}/x") ? "wrote" : "denied") << std::endl; }}\n')
    first = client.execute("c++", code)
    assert first["run"]["stdout"] == f"{tag}\ndenied\n", first
    second = client.execute("c++", code)
    assert second["compile"]["cached"] is True
    assert second["run"]["stdout"] == f"{tag}\ndenied\n", second
    run = client.execute("bash", f"ls {cache_dir} 2>&1; touch {cache_dir}/y 2>&1; echo rc=$?")["run"]
    assert "rc=0" not in run["stdout"]


@needs_cxx
def test_concurrent_identical_submissions_compile_once(client: Client) -> None:
    code = _unique(_hello("together"))
    with ThreadPoolExecutor(max_workers=3) as pool:
        bodies = list(pool.map(lambda _: client.execute("c++", code), range(3)))
    assert all(b["run"]["stdout"] == "together\n" for b in bodies)
    assert sorted(b["compile"].get("cached", False) for b in bodies) == [False, True, True]


def test_java_compile_cached(client: Client) -> None:
    code = _unique("public class Main { public static void main(String[] a) { System.out.println(\"j\"); } }")
    first, second = client.execute("java", code), client.execute("java", code)
    assert first["run"]["stdout"] == second["run"]["stdout"] == "j\n"
    assert second["compile"]["cached"] is True


def test_judge_rejudge_uses_the_cache(client: Client) -> None:
    code = _unique("#include <cstdio>\nint main(){int a,b;scanf(\"%d %d\",&a,&b);printf(\"%d\\n\",a+b);}\n")
    body = {"language": "c++", "version": "*", "files": [{"content": code}],
            "testcases": [{"stdin": f"{i} {i}", "expected_output": f"{2 * i}\n"} for i in range(4)]}
    first = client.post("/api/v2/judge", body).json()
    second = client.post("/api/v2/judge", body).json()
    assert "cached" not in first["compile"] and second["compile"]["cached"] is True
    assert [c["verdict"] for c in first["testcases"]] == [c["verdict"] for c in second["testcases"]] == ["AC"] * 4


def test_failed_compiles_leave_no_lock_behind(client: Client, server: ServerProcess) -> None:
    locks = Path(server._env.get("SANDBOX_STATE_DIR", "/tmp/piston-state")) / "compile-cache" / "locks"
    before = set(locks.iterdir())
    for _ in range(3):
        assert client.execute("c++", _unique(BROKEN))["compile"]["code"] == 1
    assert set(locks.iterdir()) <= before
