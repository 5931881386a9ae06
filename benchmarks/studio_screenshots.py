"""Screenshots of the studio for the docs: docs/images/studio-ru.png and docs/images/studio-en.png.

    python benchmarks/studio_screenshots.py                    # trains the demo double first (about 3 min on a CPU)
    python benchmarks/studio_screenshots.py --workspace DIR    # any workspace with a trained run (`dvoinik demo DIR`)

Serves the workspace on a free port with a fresh, temporary studio database (the workspace's own
is not touched), puts a Russian document in it (text, memory, author's note, world info, a fixed
seed so the variants are the same each time), asks the double for three variants through the
page, and photographs the page with Debian's Chromium: in Russian with the context panel, and in
English with a blind test that three simulated readers have answered.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import httpx

from dvoinik.serve.launch import open_server, serving_in_thread
from dvoinik.workspace import load_workspace

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1440, "height": 1180}

TITLE = "Туман над плёсом"
TEXT = """\
Бабушка разбудила меня затемно, ещё до петухов, и велела одеваться потеплее: с реки тянуло холодом, и туман стоял над плёсом так густо, что не видно было ни лодок, ни того берега.

Я вышла на крыльцо босиком и сразу пожалела об этом; доски были мокрые и скользкие, пахло дымом, укропом и сырой землёй. За огородом, где кончались яблони, кто-то гремел вёдрами, и звук этот долго не гас в тумане, будто его держали в ладонях.

— Смотри под ноги, Варя, — сказала бабушка и подала мне корзину. — До Ильина дня ещё грибов наберём.

Мы пошли вдоль воды, и туман расступался перед нами нехотя, шаг за шагом."""
# The demo double reads 128 tokens: memory, note and world info are kept short to leave the story room.
MEMORY = "Рассказ ведёт Варя, ей двенадцать лет."
NOTE = "Медленно; запахи и звуки."
WORLD_INFO = [
    {"keys": ["бабушка", "бабушку"], "secondary_keys": [], "always": False,
     "content": "Бабушка Дуня молчалива."},
    {"keys": ["мельница", "мельницы"], "secondary_keys": [], "always": False,
     "content": "Старая мельница стоит у плёса."},
]
SETTINGS = {"preset": "coherent", "n": 3, "max_new_tokens": 40, "guard": 10, "seed": 2024}
READERS = [("Маша", 0.75), ("Дима", 0.5), ("Ольга Сергеевна", 0.6)]  # how often each reader is right



def demo_workspace(folder: Path):
    from dvoinik.demo import run_demo

    print("training the demo double (about 3 minutes on a CPU)…", flush=True)
    return run_demo(folder / "demo").workspace


def prepare(url: str, settings: dict, store) -> None:
    """The document and a blind test with answers (closed, so that its results show), through the studio's API.

    The simulated readers know the truths from the server's own store: the API keeps them sealed.
    """
    with httpx.Client(base_url=url, timeout=600) as client:
        doc = client.post("/studio/api/documents", json={"title": "Сенокос", "text": "Косили с утра."}).json()
        client.patch(f"/studio/api/documents/{doc['id']}", json={"text": "Косили с утра, пока не спала роса."})
        doc = client.post("/studio/api/documents", json={"title": TITLE, "text": TEXT}).json()
        client.patch(f"/studio/api/documents/{doc['id']}", json={
            "memory": MEMORY, "authors_note": NOTE, "note_depth": 2, "world_info": WORLD_INFO, "settings": settings,
        }).raise_for_status()
        made = client.post("/studio/api/blind-tests", json={"title": "Первый круг", "passages": 6, "kind": "both"})
        if made.status_code != 201:
            print(f"no blind test: {made.status_code} {made.text}", file=sys.stderr)
            return
        test = made.json()
        token = test["url"].rstrip("/").split("/")[-1]
        items = store.blind_test(test["id"]).items
        rng = random.Random(7)
        for reader, skill in READERS:
            answers = []
            for item in items:
                right = rng.random() < skill
                if item["kind"] == "single":
                    wrong = "double" if item["truth"] == "writer" else "writer"
                else:
                    wrong = "b" if item["truth"] == "a" else "a"
                answers.append({"index": item["index"], "answer": item["truth"] if right else wrong})
            client.post(f"/blind/{token}/api/answers", json={"reader": reader, "answers": answers}).raise_for_status()
        client.post(f"/studio/api/blind-tests/{test['id']}/close").raise_for_status()


def photograph(url: str, out: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--headless"])
        page = browser.new_context(viewport=VIEWPORT, locale="ru-RU").new_page()
        page.goto(url + "/")
        expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=30_000)
        page.get_by_test_id("doc-item").filter(has_text=TITLE).click()
        expect(page.get_by_test_id("doc-title")).to_have_value(TITLE)
        page.get_by_test_id("tab-context").click()
        page.get_by_test_id("continue").click()
        expect(page.locator("[data-testid=variant][data-state=done]")).to_have_count(3, timeout=300_000)
        page.evaluate("document.activeElement.blur()")
        # As a writer drags the editor's corner up, so that the variants are in view.
        page.evaluate("const e = document.querySelector('#editor'); e.style.height = '360px'; e.scrollTop = e.scrollHeight")
        time.sleep(0.5)  # the context meter's refresh
        page.screenshot(path=str(out / "studio-ru.png"))

        page.get_by_test_id("lang-en").click()
        page.get_by_test_id("tab-blind").click()
        expect(page.get_by_test_id("blind-test").first).to_be_visible()
        time.sleep(0.3)
        page.screenshot(path=str(out / "studio-en.png"))
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workspace", type=Path, help="a workspace with a trained run (default: train the demo)")
    parser.add_argument("--out", type=Path, default=IMAGES, help="folder for the PNGs (default: docs/images)")
    parser.add_argument("--seed", type=int, default=SETTINGS["seed"], help="the variants' seed")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        ws = load_workspace(args.workspace) if args.workspace else demo_workspace(Path(tmp))
        server = open_server(ws, database=Path(tmp) / "studio.sqlite3")
        with serving_in_thread(server) as url:
            prepare(url, {**SETTINGS, "seed": args.seed}, server.store)
            photograph(url, args.out)
    print(f"wrote {args.out / 'studio-ru.png'} and {args.out / 'studio-en.png'}")


if __name__ == "__main__":
    main()
