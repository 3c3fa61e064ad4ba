"""What the backend offers against the emulator's PythonLTS view: exactly what the image has."""

from __future__ import annotations

from emulator.testing import EmulatorProcess
from tests.conftest import POOL_OPTIONS, Client, pool_backend


def languages(client: Client) -> set[str]:
    response = client.get("/api/v2/runtimes")
    assert response.status_code == 200, response.text
    return {runtime["language"] for runtime in response.json()}


def test_runtimes_are_the_pythonlts_image(pool_client: Client) -> None:
    assert languages(pool_client) == {"python", "bash", "perl"}
    ran = pool_client.execute("bash", "echo $((6 * 7)); perl -e 'print 1'; command -v java node gcc || true")
    assert ran["run"]["code"] == 0 and ran["run"]["stdout"] == "42\n1"


def test_image_toolchains_gcc_adds_c_and_cpp() -> None:
    with EmulatorProcess(**POOL_OPTIONS, image_toolchains=["gcc"]) as emulator, pool_backend(emulator) as server:
        client = Client(server.url)
        assert languages(client) == {"python", "bash", "perl", "c", "c++"}
        code = "#include <stdio.h>\nint main(void) { puts(\"compiled in the session\"); return 0; }\n"
        ran = client.execute("c", code)
        assert ran["run"]["stdout"] == "compiled in the session\n" and ran["run"]["code"] == 0
