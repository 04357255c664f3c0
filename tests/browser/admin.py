"""What the browser tests do on the dashboard's admin views (the migration panel, the status
page), in one place."""

from __future__ import annotations

import json
import time

from playwright.sync_api import Locator, Page, expect

from tests.browser.dashboard import open_signed_in

RUN_S = 90  # a migration of the messy sample on a loaded 2-core machine, with margin


def open_migration(page: Page, url: str) -> None:
    """The migration panel, signed in as the admin, once it knows the caller may migrate (GET
    /migrate/runs answered)."""
    open_signed_in(page, f"{url}#migrate")
    expect(page.locator("#migration-card")).to_be_visible()
    expect(page.locator("#migration-recent h2")).to_have_text("Recent runs")


def choose_file(page: Page, name: str, data: bytes) -> None:
    page.set_input_files("#migration-file", files=[
        {"name": name, "mimeType": "application/json", "buffer": data}])


def run_id(page: Page) -> str:
    return page.locator("#migration-run-id").inner_text()


def wait_for_new_run(page: Page, previous: str | None, timeout_s: float = 30) -> str:
    """The id of the run the panel shows once it is not `previous`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        locator = page.locator("#migration-run-id")
        if locator.count() and locator.inner_text() != previous:
            return locator.inner_text()
        page.wait_for_timeout(100)
    raise AssertionError(f"the panel still shows run {previous} after {timeout_s} s")


def wait_until_completed(page: Page, timeout_s: float = RUN_S) -> None:
    expect(page.locator("#migration-state")).to_have_text("completed", timeout=timeout_s * 1000)
    expect(page.locator("#migration-account")).to_be_visible()


def account(page: Page) -> dict[str, int]:
    """The account table: outcome -> records."""
    result = {}
    for row in page.locator("#migration-account tbody tr").all():
        cells = row.locator("td").all_inner_texts()
        result[cells[0]] = int(cells[1].replace(",", ""))
    return result


def reasons(page: Page) -> dict[int, tuple[str, str]]:
    """The reasons table: index -> (id, reason), once the report is shown (the panel shows a
    completed run's account first and its report when that has arrived)."""
    expect(page.locator(".reasons-caption")).to_be_visible(timeout=RUN_S * 1000)
    result = {}
    for row in page.locator("#migration-reasons tbody tr").all():
        cells = row.locator("td").all_inner_texts()
        result[int(cells[0])] = (cells[1], cells[3])
    return result


def sample(page: Page) -> list[dict]:
    return json.loads(page.locator("#migration-sample pre").inner_text())


def progress(page: Page) -> int:
    """Records done, as the progress bar says (`aria-valuenow`)."""
    return int(page.locator("#migration-progress").get_attribute("aria-valuenow") or 0)


def message(page: Page) -> Locator:
    return page.locator("#migration-message")


def status_row(page: Page, check: str) -> Locator:
    return page.locator(f'#status-table tr[data-check="{check}"]')
