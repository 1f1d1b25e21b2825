"""A real, throwaway WordPress site for the plugin's tests: MariaDB on its own data dir and port, a copy of
Debian's WordPress with a wp-config.php of our own, PHP's built-in web server, and ``wp()``/``rest()`` to run PHP
inside WordPress from a test.

Everything lives under one temporary folder and is stopped by the fixtures in conftest.py. Failures carry the
tail of the logs that explain them (WordPress's debug log, php -S's and MariaDB's).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.server_process import free_port

WORDPRESS_CORE = Path("/usr/share/wordpress")
MARIADBD = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
MARIADB_INSTALL_DB = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"
PHP = shutil.which("php") or "/usr/bin/php"
PLUGIN_SOURCE = Path(__file__).resolve().parents[2] / "assets" / "wordpress" / "image-studio"
PLUGIN_FILE = "image-studio/image-studio.php"
ADMIN, AUTHOR, SUBSCRIBER = "admin", "author", "subscriber"
PASSWORD = "correct horse battery staple"
JSON_MARK = "@@imagestudio-json@@"
# What in WordPress's debug log is an error (WordPress writes its database errors there too). WordPress 6.1's own
# code is older than PHP 8.2 and logs deprecations of its own on every request: those are left out, the plugin's
# deprecations (PHP 8.2's are the next version's errors) are not, nor any warning, notice or fatal error.
LOG_ERROR = re.compile(r"PHP (Fatal error|Parse error|Warning|Notice|Deprecated|Recoverable fatal error)"
                       r"|WordPress database error")
CORE_DEPRECATION = re.compile(r"PHP Deprecated: .* in \S*/(wp-includes|wp-admin)/\S+ on line \d+\s*$")


def is_error(line: str) -> bool:
    return bool(LOG_ERROR.search(line)) and not CORE_DEPRECATION.search(line)


def tail(path: Path, chars: int = 3000) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return text[-chars:] if text else f"({path.name} is empty)"


def stop_group(proc: subprocess.Popen | None, timeout: float = 15) -> None:
    """Stop a process started with start_new_session=True, and what it forked (php -S's workers)."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
    except ProcessLookupError:
        pass


def tools_missing() -> list[str]:
    """The Debian packages these tests need that are not installed here."""
    missing = [package for path, package in ((MARIADBD, "mariadb-server"), (MARIADB_INSTALL_DB, "mariadb-server"),
                                             (PHP, "php-cli"), (WORDPRESS_CORE / "wp-load.php", "wordpress"))
               if not os.access(path, os.R_OK)]
    if not missing:
        modules = subprocess.run([PHP, "-m"], capture_output=True, text=True, timeout=30,
                                 check=False).stdout.lower().split()
        missing += [f"php-{name}" for name in ("mysqli", "curl", "gd", "xml", "mbstring") if name not in modules]
    return sorted(set(missing))


class MariaDB:
    """mariadbd on a data dir of its own and a free port on 127.0.0.1, without grant tables (root, no password)."""

    def __init__(self, folder: Path):
        self.folder, self.datadir = folder, folder / "data"
        self.port = free_port()
        self.log = folder / "mariadb.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> MariaDB:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            subprocess.run([MARIADB_INSTALL_DB, "--no-defaults", f"--datadir={self.datadir}",
                            "--auth-root-authentication-method=normal", "--skip-test-db"]
                           + (["--user=root"] if os.geteuid() == 0 else []),
                           stdout=log, stderr=subprocess.STDOUT, check=True, timeout=timeout)
            self.proc = subprocess.Popen(
                [MARIADBD, "--no-defaults", f"--datadir={self.datadir}", f"--port={self.port}",
                 "--bind-address=127.0.0.1", f"--socket={self.datadir}/mysqld.sock",
                 f"--pid-file={self.datadir}/mysqld.pid", "--skip-grant-tables", "--skip-log-bin",
                 "--innodb-flush-log-at-trx-commit=0", "--innodb-buffer-pool-size=64M", "--skip-name-resolve"]
                + (["--user=root"] if os.geteuid() == 0 else []),
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mariadbd exited with {self.proc.returncode}:\n{tail(self.log)}")
            if self.sql("SELECT 1").returncode == 0:
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"MariaDB did not accept connections within {timeout} s:\n{tail(self.log)}")

    def sql(self, statement: str) -> subprocess.CompletedProcess:
        """One statement through PHP's mysqli (what WordPress itself uses): exit status 0 when it ran."""
        code = ("mysqli_report(MYSQLI_REPORT_OFF); $db = @new mysqli('127.0.0.1', 'root', '', '', (int) $argv[1]);"
                " if ($db->connect_errno) { fwrite(STDERR, $db->connect_error); exit(1); }"
                " if (!$db->query($argv[2])) { fwrite(STDERR, $db->error); exit(2); }")
        return subprocess.run([PHP, "-r", code, str(self.port), statement], capture_output=True, text=True,
                              timeout=30, check=False)

    def create_database(self, name: str) -> None:
        done = self.sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        if done.returncode:
            raise RuntimeError(f"CREATE DATABASE {name} failed: {done.stderr}\n{tail(self.log)}")

    def stop(self) -> None:
        stop_group(self.proc, timeout=30)


WP_CONFIG = """<?php
// The throwaway test site's own config (Debian's reads /etc/wordpress instead).
define( 'DB_NAME', {db_name} );
define( 'DB_USER', 'root' );
define( 'DB_PASSWORD', '' );
define( 'DB_HOST', {db_host} );
define( 'DB_CHARSET', 'utf8mb4' );
define( 'DB_COLLATE', '' );
{salts}
$table_prefix = 'wp_';
define( 'WP_HOME', {url} );
define( 'WP_SITEURL', {url} );
define( 'WP_DEBUG', true );
define( 'WP_DEBUG_LOG', {debug_log} );
define( 'WP_DEBUG_DISPLAY', false );
define( 'SCRIPT_DEBUG', false );
define( 'DISABLE_WP_CRON', true );  // cron runs only when a test runs do_action()
define( 'WP_HTTP_BLOCK_EXTERNAL', false );
define( 'FS_METHOD', 'direct' );
define( 'AUTOMATIC_UPDATER_DISABLED', true );
define( 'WP_AUTO_UPDATE_CORE', false );
define( 'WP_CONTENT_DIR', {content_dir} );
define( 'WP_CONTENT_URL', {url} . '/wp-content' );
if ( ! defined( 'ABSPATH' ) ) {{
	define( 'ABSPATH', {abspath} );
}}
require_once ABSPATH . 'wp-settings.php';
"""

# The site never calls wordpress.org: CI may be offline, or online and slow. Its update checks are off (offline,
# each would log a PHP warning) and any other request to another host fails at once; requests to 127.0.0.1 (the
# Image Studio server, the site itself) are untouched. And it sends no mail (there is no sendmail; the installer
# mails the admin).
OFFLINE_MU_PLUGIN = """<?php
foreach ( array( '_maybe_update_core', '_maybe_update_plugins', '_maybe_update_themes' ) as $check ) {
	remove_action( 'admin_init', $check );
}
remove_action( 'init', 'wp_schedule_update_checks' );
add_filter( 'pre_http_request', function ( $pre, $args, $url ) {
	$host = wp_parse_url( $url, PHP_URL_HOST );
	return in_array( $host, array( '127.0.0.1', 'localhost' ), true ) ? $pre
		: new WP_Error( 'offline_test_site', 'the test site does not call ' . $host );
}, 10, 3 );
add_filter( 'pre_wp_mail', '__return_false' );
"""

THEME_STYLE = "/*\nTheme Name: Test Theme\nDescription: The throwaway test site's minimal classic theme.\n*/\n"
THEME_INDEX = "<?php wp_head(); while ( have_posts() ) { the_post(); the_content(); } wp_footer();\n"

# php -S: existing files (and folders with an index.php) are served as they are, PHP files run; anything else is
# WordPress's index.php with the request's URI (the site has plain permalinks: its REST API is ?rest_route=).
ROUTER = """<?php
$path = parse_url( $_SERVER['REQUEST_URI'], PHP_URL_PATH );
$file = $_SERVER['DOCUMENT_ROOT'] . $path;
if ( '/' !== $path && ( is_file( $file ) || is_file( rtrim( $file, '/' ) . '/index.php' ) ) ) {
	return false;
}
$_SERVER['SCRIPT_NAME'] = '/index.php';
$_SERVER['PHP_SELF'] = '/index.php';
$_SERVER['SCRIPT_FILENAME'] = $_SERVER['DOCUMENT_ROOT'] . '/index.php';
require $_SERVER['DOCUMENT_ROOT'] . '/index.php';
"""

# What wp() runs: WordPress loaded as for a request to the site's front page, the user signed in, the test's
# code as a function body; its return value comes back as JSON after a marker (anything printed before is kept).
RUNNER = """<?php
$_SERVER['HTTP_HOST'] = {host};
$_SERVER['SERVER_NAME'] = '127.0.0.1';
$_SERVER['SERVER_PORT'] = {port};
$_SERVER['REQUEST_URI'] = '/';
$_SERVER['REQUEST_METHOD'] = 'GET';
$_SERVER['REMOTE_ADDR'] = '127.0.0.1';
$_SERVER['SERVER_PROTOCOL'] = 'HTTP/1.1';
$_SERVER['HTTP_USER_AGENT'] = 'image-studio-tests';
if ( {installing} ) {{
	define( 'WP_INSTALLING', true );
}}
require {wp_load};
require_once ABSPATH . 'wp-admin/includes/plugin.php';
$image_studio_test_user = {user};
if ( null !== $image_studio_test_user ) {{
	$image_studio_test_found = get_user_by( 'login', $image_studio_test_user );
	if ( ! $image_studio_test_found ) {{
		fwrite( STDERR, "no user $image_studio_test_user" );
		exit( 3 );
	}}
	wp_set_current_user( $image_studio_test_found->ID );
}} else {{
	wp_set_current_user( 0 );
}}
$image_studio_test_result = ( function () {{
{code}
}} )();
echo "\\n" . {mark}
	. wp_json_encode( $image_studio_test_result, JSON_UNESCAPED_SLASHES | JSON_PARTIAL_OUTPUT_ON_ERROR );
"""

REST = """
$request = new WP_REST_Request( {method}, {route} );
$query = {query};
if ( $query ) {{
	$request->set_query_params( $query );
}}
$body = {body};
if ( null !== $body ) {{
	$request->set_header( 'Content-Type', 'application/json' );
	$request->set_body( wp_json_encode( $body ) );
}}
$response = rest_do_request( $request );
return array(
	'status' => $response->get_status(),
	'data'   => rest_get_server()->response_to_data( $response, false ),
);
"""


def php_str(value) -> str:
    """A PHP literal for a Python value: a string as itself, anything else (numbers, lists, dicts) through JSON."""
    if value is None:
        return "null"
    text = value if isinstance(value, str) else json.dumps(value)
    quoted = "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return quoted if isinstance(value, str) else f"json_decode({quoted}, true)"


class WordPressError(AssertionError):
    """A PHP error, a WordPress database error or a non-zero exit: the code under test misbehaved."""


class WordPressSite:
    """A copy of Debian's WordPress in ``folder``, on MariaDB ``db``, served by php -S on a free port."""

    def __init__(self, folder: Path, db: MariaDB, db_name: str = "wordpress"):
        self.root, self.db, self.db_name = folder / "site", db, db_name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.debug_log = self.root / "wp-content" / "debug.log"
        self.server_log = folder / "php-server.log"
        self.router = folder / "router.php"
        self.runner_dir = folder / "runner"
        self.proc: subprocess.Popen | None = None
        self._log_seen = 0  # debug.log bytes already checked

    # --- building ---------------------------------------------------------------------------------------------

    def build(self, plugin: Path = PLUGIN_SOURCE) -> WordPressSite:
        # Debian's tree links some files to other packages (underscore.js, getID3, the CA bundle), some with
        # relative links: in the copy they are copies of what they point at (a link to nothing is left out).
        shutil.copytree(WORDPRESS_CORE, self.root, symlinks=True, ignore=shutil.ignore_patterns("wp-config.php"))
        for link in [path for path in self.root.rglob("*") if path.is_symlink()]:
            target = (WORDPRESS_CORE / link.relative_to(self.root)).resolve()
            link.unlink()
            if target.is_dir():
                shutil.copytree(target, link)
            elif target.is_file():
                shutil.copy2(target, link)
        content = self.root / "wp-content"
        for sub in ("uploads", "upgrade", "mu-plugins", "themes/test-theme"):
            (content / sub).mkdir(parents=True, exist_ok=True)
        (content / "themes" / "test-theme" / "style.css").write_text(THEME_STYLE)
        (content / "themes" / "test-theme" / "index.php").write_text(THEME_INDEX)
        (content / "mu-plugins" / "offline.php").write_text(OFFLINE_MU_PLUGIN)
        (content / "plugins" / "image-studio").symlink_to(plugin, target_is_directory=True)
        salts = "\n".join(f"define( '{name}', '{secrets.token_hex(32)}' );" for name in (
            "AUTH_KEY", "SECURE_AUTH_KEY", "LOGGED_IN_KEY", "NONCE_KEY", "AUTH_SALT", "SECURE_AUTH_SALT",
            "LOGGED_IN_SALT", "NONCE_SALT"))
        (self.root / "wp-config.php").write_text(WP_CONFIG.format(
            db_name=php_str(self.db_name), db_host=php_str(f"127.0.0.1:{self.db.port}"), salts=salts,
            url=php_str(self.url), debug_log=php_str(str(self.debug_log)), content_dir=php_str(str(content)),
            abspath=php_str(str(self.root) + "/")))
        self.router.write_text(ROUTER)
        self.runner_dir.mkdir(exist_ok=True)
        self.db.create_database(self.db_name)
        return self

    def install(self) -> WordPressSite:
        """WordPress's installer, the users the tests sign in as, the test theme and the plugin, activated."""
        self.wp(f"""
            require_once ABSPATH . 'wp-admin/includes/upgrade.php';
            $installed = wp_install( 'Image Studio test site', {php_str(ADMIN)}, 'admin@example.com', false, '',
                                     {php_str(PASSWORD)} );
            update_option( 'home', {php_str(self.url)} );
            update_option( 'siteurl', {php_str(self.url)} );
            update_option( 'permalink_structure', '' );
            update_option( 'timezone_string', 'UTC' );
            update_option( 'show_avatars', 0 );  // no gravatar.com
            return $installed['user_id'];
        """, user=None, installing=True)
        return self.wp(f"""
            switch_theme( 'test-theme' );
            $roles = array( {php_str(AUTHOR)} => 'author', {php_str(SUBSCRIBER)} => 'subscriber' );
            foreach ( $roles as $login => $role ) {{
                $id = wp_insert_user( array( 'user_login' => $login, 'user_pass' => {php_str(PASSWORD)},
                                             'user_email' => $login . '@example.com', 'role' => $role ) );
                if ( is_wp_error( $id ) ) {{
                    throw new Exception( $id->get_error_message() );
                }}
            }}
            // The block editor's welcome guide stays closed (it shows pictures from wordpress.org).
            global $wpdb;
            update_user_meta( get_user_by( 'login', {php_str(ADMIN)} )->ID,
                              $wpdb->get_blog_prefix() . 'persisted_preferences',
                              array( 'core/edit-post' => array( 'welcomeGuide' => false ),
                                     '_modified' => gmdate( 'c' ) ) );
            $activated = activate_plugin( {php_str(PLUGIN_FILE)} );
            if ( is_wp_error( $activated ) ) {{
                throw new Exception( 'activate_plugin: ' . $activated->get_error_message() );
            }}
            return array( 'active' => is_plugin_active( {php_str(PLUGIN_FILE)} ),
                          'author_can_upload' => user_can( get_user_by( 'login', 'author' ), 'upload_files' ),
                          'subscriber_can_upload' => user_can( get_user_by( 'login', 'subscriber' ), 'upload_files' ) );
        """)

    # --- php -S -----------------------------------------------------------------------------------------------

    def serve(self, timeout: float = 30) -> WordPressSite:
        with open(self.server_log, "ab") as log:
            self.proc = subprocess.Popen([PHP, "-S", f"127.0.0.1:{self.port}", "-t", str(self.root),
                                          str(self.router)], cwd=self.root, stdout=log, stderr=subprocess.STDOUT,
                                         env=os.environ | {"PHP_CLI_SERVER_WORKERS": "4"}, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"php -S exited with {self.proc.returncode}:\n{tail(self.server_log)}")
            try:
                if httpx.get(f"{self.url}/?rest_route=/", timeout=5).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"php -S did not answer within {timeout} s:\n{tail(self.server_log)}")

    def stop(self) -> None:
        stop_group(self.proc)
        self.proc = None

    # --- running PHP inside WordPress -------------------------------------------------------------------------

    def wp(self, php_code: str, user: str | None = ADMIN, *, installing: bool = False, timeout: float = 120):
        """Run ``php_code`` (a function body; what it returns comes back) inside WordPress as ``user``."""
        script = self.runner_dir / f"run-{secrets.token_hex(6)}.php"
        script.write_text(RUNNER.format(
            host=php_str(f"127.0.0.1:{self.port}"), port=self.port, installing="true" if installing else "false",
            wp_load=php_str(str(self.root / "wp-load.php")), user=php_str(user), code=php_code,
            mark=php_str(JSON_MARK)))
        try:
            done = subprocess.run([PHP, "-d", "display_errors=stderr", "-d", "log_errors=0", str(script)],
                                  cwd=self.root, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise WordPressError(f"PHP ran past {timeout} s:\n{php_code}\n{self.logs()}") from None
        finally:
            script.unlink(missing_ok=True)
        _, marked, result = done.stdout.rpartition(JSON_MARK)
        problems = [] if done.returncode == 0 and marked else [f"php exited with {done.returncode}"]
        if done.stderr.strip():
            problems.append("stderr: " + done.stderr.strip()[-3000:])
        problems += self.new_log_errors()
        if problems:
            raise WordPressError("\n".join(problems) + f"\n--- code ---\n{php_code.strip()}\n--- stdout ---\n"
                                 f"{done.stdout[-1500:]}\n{self.logs()}")
        return json.loads(result)

    def rest(self, method: str, route: str, body: dict | None = None, user: str | None = ADMIN,
             query: dict | None = None) -> tuple[int, dict]:
        """A request to WordPress's REST server from inside (rest_do_request), as ``user``: (status, data)."""
        answer = self.wp(REST.format(method=php_str(method), route=php_str(route), query=php_str(query),
                                     body=php_str(body)), user=user)
        return answer["status"], answer["data"]

    # --- logs -------------------------------------------------------------------------------------------------

    def new_log_errors(self) -> list[str]:
        """Error lines the debug log gained since the last look."""
        try:
            with open(self.debug_log, "rb") as log:
                log.seek(self._log_seen)
                new = log.read().decode(errors="replace")
                self._log_seen = log.tell()
        except FileNotFoundError:
            return []
        return [line for line in new.splitlines() if is_error(line)]

    def logs(self) -> str:
        try:  # WordPress's own deprecations left out: the rest is what explains a failure
            debug = "\n".join(line for line in self.debug_log.read_text(errors="replace").splitlines()
                              if not CORE_DEPRECATION.search(line))[-3000:] or "(nothing but core deprecations)"
        except FileNotFoundError:
            debug = "(no debug.log)"
        return (f"--- WordPress debug.log ---\n{debug}\n--- php -S ---\n{tail(self.server_log, 2000)}"
                f"\n--- MariaDB ---\n{tail(self.db.log, 1000)}")
