"""The console in a real headless Chromium against a real `tessera server`: sign in (and a bad sign-in), create
a bucket, upload a 30 MiB file and a folder, browse, download and compare bytes, share a link and fetch it,
delete; a user sees only their buckets and no root pages."""

from __future__ import annotations

import hashlib
import json
import os
import urllib.request
from pathlib import Path
from typing import Any

from tests.console_helpers import Browser, ConsoleClient, public_read, wait_for
from tests.s3_helpers import unique
from tests.server_process import ACCESS_KEY, SECRET_KEY, ServerProcess

MiB = 1 << 20


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_bad_sign_in_shows_an_error(browser: Browser, served: tuple[ServerProcess, str]) -> None:
    browser.sign_in(served[1], ACCESS_KEY, "not-the-secret")
    browser.text("#signin-error", "wrong")
    browser.page("bad-sign-in")
    assert browser.driver.find_element("css selector", "#top").get_attribute("hidden") is not None


def test_bucket_upload_browse_download_share_delete(
    browser: Browser, served: tuple[ServerProcess, str], tmp_path: Path
) -> None:
    srv, url = served
    browser.sign_in(url, ACCESS_KEY, SECRET_KEY)
    browser.find("#create-bucket")
    browser.page("buckets")
    bucket = unique()
    browser.find("#new-bucket").send_keys(bucket)
    browser.find("#create-bucket button").click()
    browser.find(f"[data-bucket='{bucket}'] a").click()
    browser.find("#drop-zone")
    browser.page("empty-bucket")

    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(30 * MiB))
    browser.find("#upload-files").send_keys(str(big))
    browser.text(".upload[data-key='big.bin']", "done", timeout=120)
    folder = tmp_path / "photos"
    (folder / "2024").mkdir(parents=True)
    (folder / "a.txt").write_bytes(b"first file\n")
    (folder / "2024" / "b.jpg").write_bytes(os.urandom(200_000))
    browser.find("#upload-folder").send_keys(str(folder))
    browser.text(".upload[data-key='photos/2024/b.jpg']", "done", timeout=60)
    browser.text(".upload[data-key='photos/a.txt']", "done", timeout=60)
    browser.page("uploaded")
    s3 = srv.client()
    assert s3.head_object(Bucket=bucket, Key="big.bin")["ContentLength"] == 30 * MiB
    assert s3.get_object(Bucket=bucket, Key="photos/a.txt")["Body"].read() == b"first file\n"

    # Browse into the folders, then download and compare bytes.
    browser.find("[data-prefix='photos/'] a").click()
    browser.find("[data-prefix='photos/2024/'] a").click()
    browser.find("[data-key='photos/2024/b.jpg'] a.button").click()
    got = wait_for(lambda: _downloaded(browser, "b.jpg"), 30, "the download of b.jpg")
    assert _sha(got) == _sha(folder / "2024" / "b.jpg")
    browser.page("folder")
    browser.driver.get(f"{url}#/b/{bucket}/")
    browser.find("[data-key='big.bin'] a:not(.button)").click()
    browser.text("#object-size", f"{30 * MiB} bytes")
    browser.text("#object-health", "healthy")
    browser.find("#download").click()
    got = wait_for(lambda: _downloaded(browser, "big.bin"), 60, "the download of big.bin")
    assert _sha(got) == _sha(big)

    # Share a link, and fetch it without any credentials.
    browser.find("#share button[type=submit]").click()
    link = wait_for(lambda: browser.find("#share-link").get_attribute("value"), 20, "a share link")
    browser.page("object")
    with urllib.request.urlopen(link, timeout=60) as resp:
        assert hashlib.sha256(resp.read()).hexdigest() == _sha(big)

    # Tag it.
    browser.find("#object-tags").send_keys("project=apollo\nstage=raw")
    browser.find("#object-tags-form button").click()
    want = [{"Key": "project", "Value": "apollo"}, {"Key": "stage", "Value": "raw"}]
    wait_for(lambda: s3.get_object_tagging(Bucket=bucket, Key="big.bin")["TagSet"] == want, 20, "the tags saved")

    # Delete the objects, then the bucket.
    browser.find("#delete-object").click()
    browser.accept_confirm()
    browser.find("#objects")
    wait_for(lambda: not browser.driver.find_elements("css selector", "[data-key='big.bin']"), 20, "big.bin gone")
    for key in ("photos/a.txt", "photos/2024/b.jpg"):
        s3.delete_object(Bucket=bucket, Key=key)
    browser.driver.get(f"{url}#/buckets")
    browser.find(f"[data-bucket='{bucket}'] button").click()
    browser.accept_confirm()
    wait_for(lambda: not browser.driver.find_elements("css selector", f"[data-bucket='{bucket}']"), 20, "bucket gone")
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def _policy_of(s3: Any, bucket: str) -> Any:
    try:
        return json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    except s3.exceptions.ClientError:
        return None


def _downloaded(browser: Browser, name: str) -> Path | None:
    path = browser.downloads / name
    partial = [p for p in browser.downloads.iterdir() if p.suffix == ".crdownload"]
    return path if path.exists() and not partial else None


def test_a_user_sees_only_their_buckets_and_no_root_pages(browser: Browser, served: tuple[ServerProcess, str]) -> None:
    srv, url = served
    root = ConsoleClient(url)
    assert root.sign_in().status == 200
    theirs = unique()
    assert root.call("POST", "/api/buckets", {"name": theirs}).status == 201
    made = root.call("POST", "/api/users", {"name": unique()}).json()
    mine = unique()
    srv.client(made["access_key"], made["secret_key"]).create_bucket(Bucket=mine)
    browser.sign_in(url, made["access_key"], made["secret_key"])
    browser.find(f"[data-bucket='{mine}']")
    browser.page("user-buckets")
    assert not browser.driver.find_elements("css selector", f"[data-bucket='{theirs}']")
    nav = browser.driver.find_element("css selector", "[data-nav=cluster]")
    assert not nav.is_displayed()
    browser.driver.get(f"{url}#/cluster")  # typed by hand: the bucket list, not the cluster
    browser.find(f"[data-bucket='{mine}']")
    browser.driver.get(f"{url}#/b/{theirs}/")
    browser.text("#listing", "AccessDenied")


def test_files_dropped_on_the_page_upload_and_a_cancelled_upload_leaves_nothing(
    browser: Browser, served: tuple[ServerProcess, str], tmp_path: Path
) -> None:
    url = served[1]
    s3, bucket = browser.at_new_bucket(served, "docs/")
    # A drop as the browser makes it (a DataTransfer of files), dispatched on the drop zone.
    browser.driver.execute_script(
        """const dt = new DataTransfer();
        dt.items.add(new File(["dropped one"], "one.txt", {type: "text/plain"}));
        dt.items.add(new File(["dropped two"], "two.txt", {type: "text/plain"}));
        document.getElementById("drop-zone").dispatchEvent(
            new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));"""
    )
    browser.text(".upload[data-key='docs/two.txt']", "done")
    assert s3.get_object(Bucket=bucket, Key="docs/one.txt")["Body"].read() == b"dropped one"
    browser.find("#objects [data-key='docs/two.txt']")
    browser.page("dropped")

    # An object's metadata and checksums, each drawn as text.
    s3.put_object(Bucket=bucket, Key="docs/meta", Body=b"m", Metadata={"owner": "ada"}, ChecksumAlgorithm="SHA256")
    browser.driver.get(f"{url}#/o/{bucket}/docs/meta")
    facts = browser.text("#object-facts", "x-amz-meta-owner")
    assert "Checksum sha256" in facts and "[object" not in facts
    browser.driver.get(f"{url}#/b/{bucket}/docs/")

    big = tmp_path / "cancelled.bin"
    big.write_bytes(os.urandom(80 * MiB))
    browser.find("#upload-files").send_keys(str(big))
    browser.find(".upload[data-key='docs/cancelled.bin'] button").click()
    browser.text(".upload[data-key='docs/cancelled.bin']", "cancelled")
    browser.page("cancelled")
    wait_for(lambda: not s3.list_multipart_uploads(Bucket=bucket).get("Uploads"), 20, "the upload aborted")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == ["docs/meta", "docs/one.txt", "docs/two.txt"]

    # Pick two and delete them at once.
    browser.find("#objects [data-key='docs/one.txt'] input.pick").click()
    browser.find("#objects [data-key='docs/two.txt'] input.pick").click()
    browser.text("#delete-selected", "Delete 2 selected")
    browser.find("#delete-selected").click()
    browser.accept_confirm()
    wait_for(lambda: len(browser.driver.find_elements("css selector", "#objects [data-key]")) == 1, 20, "two gone")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["docs/meta"]


def test_the_root_adds_a_user_who_can_sign_in_and_removes_them(
    browser: Browser, served: tuple[ServerProcess, str]
) -> None:
    _, url = served
    browser.sign_in(url, ACCESS_KEY, SECRET_KEY)
    browser.find("[data-nav=users]").click()
    name = unique()
    browser.find("#new-user").send_keys(name)
    browser.find("#add-user button").click()
    access = browser.find("#new-access-key").text
    secret = browser.find("#new-secret-key").text
    browser.find(f"[data-user='{name}']")
    browser.page("users")
    assert ConsoleClient(url).sign_in(access, secret).status == 200
    # Its policy: read-only now.
    from selenium.webdriver.support.ui import Select  # here: without selenium the fixture skips the test

    browser.find(f"[data-user='{name}'] button:not(.danger)").click()
    Select(browser.find("#user-policy-choice")).select_by_value("readonly")
    browser.find("#user-policy-form button[type=submit]").click()
    root = ConsoleClient(url)
    assert root.sign_in().status == 200
    policy = lambda: root.call("GET", f"/api/users/{name}/policy").json().get("policy")  # noqa: E731
    wait_for(lambda: policy() == "readonly", 20, "the policy saved")
    browser.find(f"[data-user='{name}'] button.danger").click()
    browser.accept_confirm()
    wait_for(lambda: not browser.driver.find_elements("css selector", f"[data-user='{name}']"), 20, "the user gone")
    assert ConsoleClient(url).sign_in(access, secret).status == 403


def test_the_keyboard_reaches_every_control_and_signs_in(browser: Browser, served: tuple[ServerProcess, str]) -> None:
    from selenium.webdriver.common.keys import Keys

    _, url = served
    browser.driver.get(url)
    browser.find("#access-key")  # focused on load
    active = browser.driver.switch_to.active_element
    active.send_keys(ACCESS_KEY, Keys.TAB)
    browser.driver.switch_to.active_element.send_keys(SECRET_KEY, Keys.ENTER)
    browser.find("#create-bucket")
    # The page is drawn when it has focused its main (route() does last): only then is the focus the test's.
    ready = "return document.activeElement && document.activeElement.id === 'main'"
    wait_for(lambda: browser.driver.execute_script(ready), 20, "the bucket list drawn")
    # Tab from the top of the page (its skip link): every stop is something visible.
    browser.driver.execute_script("document.querySelector('a.skip').focus()")
    stops = []
    for _ in range(12):
        browser.driver.switch_to.active_element.send_keys(Keys.TAB)
        el = browser.driver.switch_to.active_element
        stops.append((el.tag_name, el.text or el.get_attribute("aria-label") or el.get_attribute("id")))
        assert el.is_displayed(), f"an invisible tab stop: {stops[-1]}"
    assert ("a", "Buckets") in stops and ("button", "Sign out") in stops and ("button", "Create bucket") in stops
    # And on a bucket's page, past the hidden file pickers.
    bucket = unique()
    served[0].client().create_bucket(Bucket=bucket)
    browser.driver.get(f"{url}#/b/{bucket}/")
    browser.find("#drop-zone")
    wait_for(lambda: browser.driver.execute_script(ready), 20, "the bucket page drawn")
    seen = []
    for _ in range(14):
        browser.driver.switch_to.active_element.send_keys(Keys.TAB)
        el = browser.driver.switch_to.active_element
        seen.append(el.text or el.get_attribute("id"))
        assert el.is_displayed(), f"an invisible tab stop after {seen}"
    assert "Upload files" in seen and "Upload a folder" in seen


def test_versioning_is_enabled_from_the_bucket_settings_and_a_version_deleted(
    browser: Browser, served: tuple[ServerProcess, str]
) -> None:
    url = served[1]
    s3, bucket = browser.at_new_bucket(served)
    browser.find("#bucket-settings summary").click()
    browser.text("#versioning-status", "never enabled")
    browser.find("#versioning-toggle").click()
    browser.text("#versioning-status", "Enabled")
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    # A bucket policy, typed into the settings.
    policy = public_read(bucket)
    browser.find("#bucket-policy-text").send_keys(json.dumps(policy))
    browser.find("#bucket-policy-form button[type=submit]").click()
    wait_for(lambda: _policy_of(s3, bucket) == policy, 20, "the bucket policy saved")
    first = s3.put_object(Bucket=bucket, Key="doc", Body=b"first")["VersionId"]
    s3.put_object(Bucket=bucket, Key="doc", Body=b"second")
    browser.driver.get(f"{url}#/o/{bucket}/doc")
    wait_for(lambda: len(browser.driver.find_elements("css selector", "#versions tr[data-version]")) == 2, 20, "2")
    browser.page("versions")
    browser.find(f"#versions tr[data-version='{first}'] button.danger").click()
    browser.accept_confirm()
    wait_for(lambda: len(browser.driver.find_elements("css selector", "#versions tr[data-version]")) == 1, 20, "1")
    left = s3.list_object_versions(Bucket=bucket)["Versions"]
    assert len(left) == 1 and left[0]["VersionId"] != first


def test_a_bucket_made_with_object_lock_shows_it_and_its_objects_retention(
    browser: Browser, served: tuple[ServerProcess, str]
) -> None:
    srv, url = served
    browser.sign_in(url, ACCESS_KEY, SECRET_KEY)
    bucket = unique()
    browser.find("#new-bucket").send_keys(bucket)
    browser.find("#new-bucket-lock").click()
    browser.find("#create-bucket button").click()
    browser.find(f"[data-bucket='{bucket}'] a").click()
    browser.find("#bucket-settings summary").click()
    browser.text("#object-lock", "Object lock: enabled")
    browser.text("#versioning-status", "Enabled")
    srv.client().put_object(
        Bucket=bucket,
        Key="kept",
        Body=b"k",
        ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate="2099-01-01T00:00:00Z",
        ChecksumAlgorithm="SHA256",
    )
    browser.driver.get(f"{url}#/o/{bucket}/kept")
    facts = browser.text("#object-facts", "Object lock mode")
    assert "COMPLIANCE" in facts and "2099" in facts
    browser.find("#legal-hold-toggle").click()  # place a legal hold, then see it
    browser.text("#legal-hold", "Legal hold: on")
    assert srv.client().get_object_legal_hold(Bucket=bucket, Key="kept")["LegalHold"]["Status"] == "ON"
    browser.page("locked-object")
