"""The chat page in a real browser: Debian's chromium, headless, driven by
Selenium through Debian's chromedriver (both from ``make system-deps``; the
tests skip without them).

Two browser members (two tabs of one browser) and a telnet member share a
room; the screenshot the first test takes is docs/chat-web.png's source
(build/chat-web.png).
"""

import os
import shutil
import signal
import socket

import pytest
from chat_helpers import ROOT, TIMEOUT, chat_servers

webdriver = pytest.importorskip("selenium.webdriver")
pytest.importorskip("microthreads.wsgi")
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (make system-deps)"),
    pytest.mark.skipif(CHROMEDRIVER is None,
                       reason="no chromedriver on PATH (make system-deps: chromium-driver)"),
    pytest.mark.slow,
]

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
         "--window-size=900,640"]


@pytest.fixture
def browser(tmp_path):
    """A headless chromium with a new empty profile, quit at the end."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER),
                              options=options)
    driver.set_page_load_timeout(TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def shown(driver):
    """The page's room lines, as the user sees them (text)."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#lines li'), li => li.textContent)")


def online(driver):
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#members li'), li => li.textContent)")


def wait_for_line(driver, text):
    WebDriverWait(driver, TIMEOUT).until(lambda d: text in shown(d),
                                         message=f"the page never showed {text!r}")


def type_line(driver, text):
    field = driver.find_element(By.ID, "input")
    field.send_keys(text)
    driver.find_element(By.CSS_SELECTOR, "#say button").click()


def open_member(driver, url, handle, new_tab):
    if new_tab:
        driver.switch_to.new_window("tab")
    driver.get(url)
    wait_for_line(driver, "What is your handle?")
    type_line(driver, handle)
    wait_for_line(driver, f"{handle} has joined the chat.")
    return driver.current_window_handle


def test_two_browser_members_and_a_telnet_member_chat_and_see_a_closed_tab_leave(browser):
    with chat_servers() as start:
        server = start("--web-port", str(free_port()))
        url = f"http://127.0.0.1:{server.web_port}/"
        anna = open_member(browser, url, "anna", new_tab=False)
        ben = open_member(browser, url, "ben", new_tab=True)
        carl = server.join("carl")
        carl.expect_nothing_more()

        browser.switch_to.window(anna)
        type_line(browser, "<img src=x onerror=alert(1)>")
        markup = "anna says: <img src=x onerror=alert(1)>"
        browser.switch_to.window(ben)
        wait_for_line(browser, markup)
        assert browser.find_elements(By.CSS_SELECTOR, "#lines img") == []
        with pytest.raises(NoAlertPresentException):
            browser.switch_to.alert.text            # noqa: B018 - the page raised none
        WebDriverWait(browser, TIMEOUT).until(lambda d: online(d) == ["anna", "ben", "carl"])

        type_line(browser, "/msg carl hello from a browser")
        wait_for_line(browser, "[private to carl] hello from a browser")
        assert carl.lines_until("[private] ben: hello from a browser") == [
            markup, "[private] ben: hello from a browser"]

        browser.switch_to.window(anna)
        type_line(browser, "/nick anya")
        wait_for_line(browser, "anna is now known as anya.")
        carl.expect("anna is now known as anya.")
        carl.say("hi both")
        browser.switch_to.window(ben)
        wait_for_line(browser, "carl says: hi both")
        WebDriverWait(browser, TIMEOUT).until(lambda d: online(d) == ["anya", "ben", "carl"])
        os.makedirs(os.path.join(ROOT, "build"), exist_ok=True)
        assert browser.save_screenshot(os.path.join(ROOT, "build", "chat-web.png"))

        browser.switch_to.window(anna)
        browser.close()                                # the tab, not the browser
        browser.switch_to.window(ben)
        carl.expect("carl says: hi both", "anya has left the chat.")
        wait_for_line(browser, "anya has left the chat.")
        WebDriverWait(browser, TIMEOUT).until(lambda d: online(d) == ["ben", "carl"])


def test_after_a_restart_the_page_says_so_reconnects_and_joins_again(browser):
    web_port = free_port()
    with chat_servers() as start:
        first = start("--web-port", str(web_port))
        open_member(browser, f"http://127.0.0.1:{web_port}/", "gail", new_tab=False)
        first.send_signal(signal.SIGTERM)
        assert first.wait() == 0
        wait_for_line(browser, "Server is shutting down.")
        wait_for_line(browser, "Lost the connection to the server; reconnecting…")
        assert "reconnecting" in browser.find_element(By.ID, "status").text
        second = start("--web-port", str(web_port))
        wait_for_line(browser, "Reconnected to the server.")
        WebDriverWait(browser, TIMEOUT).until(          # the page gave its handle again
            lambda d: shown(d).count("gail has joined the chat.") == 2)
        hank = second.join("hank")
        assert hank.online == "Online (2): gail, hank"
        assert browser.find_element(By.ID, "status").text == "Reconnected."
