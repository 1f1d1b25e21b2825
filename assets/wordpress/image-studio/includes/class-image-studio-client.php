<?php
/**
 * Calls to the configured Image Studio server, and downloads from it (and from nowhere else).
 *
 * @package ImageStudio
 */

defined( 'ABSPATH' ) || exit;

/**
 * The server's REST API: JSON in, JSON out, its errors as WP_Error with the server's message and request_id.
 */
class Image_Studio_Client {

	/** Biggest JSON answer read into memory (async answers and job states are small; images come as files). */
	const MAX_JSON_BYTES = 4194304;

	/** Biggest image file downloaded. */
	const MAX_IMAGE_BYTES = 52428800;

	/**
	 * The server's base URL, without a trailing slash ('' when not set).
	 *
	 * @return string
	 */
	public static function server_url() {
		return untrailingslashit( (string) get_option( 'image_studio_server_url', '' ) );
	}

	/**
	 * Where the API key comes from: the IMAGESTUDIO_API_KEY constant (preferred: it stays out of the database),
	 * the plugin's option, or nowhere.
	 *
	 * @return string 'constant', 'option' or 'none'.
	 */
	public static function key_source() {
		if ( defined( 'IMAGESTUDIO_API_KEY' ) && '' !== (string) IMAGESTUDIO_API_KEY ) {
			return 'constant';
		}
		return '' !== (string) get_option( 'image_studio_api_key', '' ) ? 'option' : 'none';
	}

	/**
	 * The API key. Never sent to a browser.
	 *
	 * @return string
	 */
	public static function api_key() {
		if ( 'constant' === self::key_source() ) {
			return (string) IMAGESTUDIO_API_KEY;
		}
		return (string) get_option( 'image_studio_api_key', '' );
	}

	/**
	 * A key as it may be shown: its first characters only.
	 *
	 * @param string $key The key.
	 * @return string
	 */
	public static function mask( $key ) {
		return '' === $key ? '' : substr( $key, 0, 12 ) . '…';
	}

	/**
	 * Call the API: `$path` below /api/v1.
	 *
	 * @param string     $method  HTTP method.
	 * @param string     $path    Path below /api/v1, e.g. '/generate'.
	 * @param mixed      $body    JSON body (an array, or an object such as `new stdClass()` for `{}`).
	 * @param int        $timeout Seconds (async requests answer at once, so WordPress's short defaults are enough).
	 * @return array|WP_Error The decoded answer, or the server's error.
	 */
	public static function request( $method, $path, $body = null, $timeout = 15 ) {
		$server = self::server_url();
		if ( '' === $server ) {
			return new WP_Error( 'image_studio_not_configured', __( 'Set the Image Studio server URL under Settings → Image Studio.', 'image-studio' ), array( 'status' => 400 ) );
		}
		$args = array(
			'method'              => $method,
			'timeout'             => $timeout,
			'redirection'         => 0,
			'limit_response_size' => self::MAX_JSON_BYTES,
			'headers'             => array(
				'Accept'     => 'application/json',
				'User-Agent' => 'image-studio-wordpress/' . IMAGE_STUDIO_VERSION,
			),
		);
		$key = self::api_key();
		if ( '' !== $key ) {
			$args['headers']['Authorization'] = 'Bearer ' . $key;
		}
		if ( null !== $body ) {
			$args['headers']['Content-Type'] = 'application/json';
			$args['body']                    = wp_json_encode( $body );
		}
		// Not wp_safe_remote_request(): the configured server may listen on any port or a LAN address, and it
		// is the only host this plugin ever calls.
		$response = wp_remote_request( $server . '/api/v1' . $path, $args );
		if ( is_wp_error( $response ) ) {
			return new WP_Error(
				'image_studio_unreachable',
				/* translators: 1: server URL, 2: error message */
				sprintf( __( 'Could not reach the Image Studio server at %1$s: %2$s', 'image-studio' ), $server, $response->get_error_message() ),
				array( 'status' => 502 )
			);
		}
		$status = (int) wp_remote_retrieve_response_code( $response );
		$data   = json_decode( wp_remote_retrieve_body( $response ), true );
		if ( $status >= 400 || ! is_array( $data ) ) {
			return self::error_from( $status, is_array( $data ) ? $data : array(), (string) wp_remote_retrieve_header( $response, 'x-request-id' ) );
		}
		return $data;
	}

	/**
	 * The server's error envelope as a WP_Error: its message, status and request_id reach the author.
	 *
	 * @param int    $status     HTTP status.
	 * @param array  $data       Decoded body.
	 * @param string $request_id The X-Request-ID header.
	 * @return WP_Error
	 */
	private static function error_from( $status, $data, $request_id ) {
		$error   = isset( $data['error'] ) && is_array( $data['error'] ) ? $data['error'] : array();
		$message = isset( $error['message'] ) ? (string) $error['message'] : '';
		if ( '' === $message ) {
			/* translators: %d: HTTP status */
			$message = sprintf( __( 'The Image Studio server answered HTTP %d.', 'image-studio' ), $status );
		}
		if ( isset( $data['request_id'] ) ) {
			$request_id = (string) $data['request_id'];
		}
		return new WP_Error(
			'image_studio_error',
			$message,
			array(
				'status'      => $status >= 400 ? $status : 502,
				'request_id'  => $request_id,
				'server_code' => isset( $error['code'] ) ? (string) $error['code'] : '',
			)
		);
	}

	/**
	 * Whether a URL points at the configured server (same scheme, host and port).
	 *
	 * @param string $url URL.
	 * @return bool
	 */
	public static function is_server_url( $url ) {
		$server = wp_parse_url( self::server_url() );
		$target = wp_parse_url( $url );
		if ( ! is_array( $server ) || ! is_array( $target ) || empty( $server['host'] ) || empty( $target['host'] ) ) {
			return false;
		}
		$default_port = array(
			'http'  => 80,
			'https' => 443,
		);
		$scheme       = isset( $server['scheme'] ) ? strtolower( $server['scheme'] ) : '';
		$their_scheme = isset( $target['scheme'] ) ? strtolower( $target['scheme'] ) : '';
		if ( ! isset( $default_port[ $scheme ] ) || $scheme !== $their_scheme ) {
			return false;
		}
		$port       = isset( $server['port'] ) ? (int) $server['port'] : $default_port[ $scheme ];
		$their_port = isset( $target['port'] ) ? (int) $target['port'] : $default_port[ $scheme ];
		return strtolower( $server['host'] ) === strtolower( $target['host'] ) && $port === $their_port;
	}

	/**
	 * Download an image from the configured server into a temporary file. WordPress's download_url() refuses
	 * ports other than 80, 443 and 8080 and LAN addresses; this allows exactly the configured server, whatever
	 * its port or address, and nothing else.
	 *
	 * @param string $url A link the server answered with.
	 * @return string|WP_Error The temporary file's path (the caller removes it).
	 */
	public static function download( $url ) {
		if ( 0 === strpos( $url, 'data:image/' ) ) {
			return self::save_data_url( $url );
		}
		if ( ! self::is_server_url( $url ) ) {
			return new WP_Error( 'image_studio_refused_url', __( 'Refused to download an image from a host other than the configured Image Studio server.', 'image-studio' ), array( 'status' => 502 ) );
		}
		$file     = wp_tempnam( 'image-studio' );
		$response = wp_remote_get(
			$url,
			array(
				'timeout'             => 60,
				'redirection'         => 0,
				'stream'              => true,
				'filename'            => $file,
				'limit_response_size' => self::MAX_IMAGE_BYTES,
			)
		);
		if ( is_wp_error( $response ) || 200 !== (int) wp_remote_retrieve_response_code( $response ) ) {
			wp_delete_file( $file );
			$reason = is_wp_error( $response ) ? $response->get_error_message() : 'HTTP ' . wp_remote_retrieve_response_code( $response );
			/* translators: %s: reason */
			return new WP_Error( 'image_studio_download_failed', sprintf( __( 'Could not download the image from the Image Studio server: %s', 'image-studio' ), $reason ), array( 'status' => 502 ) );
		}
		return $file;
	}

	/**
	 * A data: URL (an unstored image in an old server's answer) into a temporary file.
	 *
	 * @param string $url The data URL.
	 * @return string|WP_Error
	 */
	private static function save_data_url( $url ) {
		$comma = strpos( $url, ',' );
		$bytes = false === $comma ? false : base64_decode( substr( $url, $comma + 1 ), true ); // phpcs:ignore WordPress.PHP.DiscouragedPHPFunctions.obfuscation_base64_decode -- image data, not code.
		if ( false === $bytes || '' === $bytes ) {
			return new WP_Error( 'image_studio_download_failed', __( 'The server answered with an unreadable image.', 'image-studio' ), array( 'status' => 502 ) );
		}
		$file = wp_tempnam( 'image-studio' );
		file_put_contents( $file, $bytes ); // phpcs:ignore WordPress.WP.AlternativeFunctions.file_system_operations_file_put_contents -- a temp file of our own.
		return $file;
	}
}
