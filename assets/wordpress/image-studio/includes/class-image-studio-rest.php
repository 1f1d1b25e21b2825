<?php
/**
 * The plugin's REST routes (namespace image-studio/v1): what the block, the media modal and the settings page
 * call with the logged-in user's cookie and REST nonce. The API key stays on the server side of WordPress.
 *
 * @package ImageStudio
 */

defined( 'ABSPATH' ) || exit;

/**
 * Routes, permissions, argument sanitising.
 */
class Image_Studio_Rest {

	const NAMESPACE_V1 = 'image-studio/v1';
	const SIZES        = array( 256, 384, 512, 640, 768, 896, 1024 );

	/**
	 * Hooks.
	 */
	public static function register() {
		add_action( 'rest_api_init', array( __CLASS__, 'routes' ) );
	}

	/**
	 * Who may generate: users who may upload files.
	 *
	 * @return bool|WP_Error
	 */
	public static function can_upload() {
		return current_user_can( 'upload_files' ) ? true : new WP_Error( 'rest_forbidden', __( 'Only users who can upload files can use Image Studio.', 'image-studio' ), array( 'status' => rest_authorization_required_code() ) );
	}

	/**
	 * Who may change settings: administrators.
	 *
	 * @return bool|WP_Error
	 */
	public static function can_manage() {
		return current_user_can( 'manage_options' ) ? true : new WP_Error( 'rest_forbidden', __( 'Only administrators can change Image Studio settings.', 'image-studio' ), array( 'status' => rest_authorization_required_code() ) );
	}

	/**
	 * Register the routes.
	 */
	public static function routes() {
		$text      = array(
			'type'              => 'string',
			'sanitize_callback' => 'sanitize_text_field',
		);
		$prompt    = array(
			'type'              => 'string',
			'required'          => true,
			'sanitize_callback' => 'sanitize_textarea_field',
			'validate_callback' => array( __CLASS__, 'validate_prompt' ),
		);
		$attachment = array(
			'type'              => 'integer',
			'required'          => true,
			'sanitize_callback' => 'absint',
		);
		$routes = array(
			'/settings'          => array( 'POST', 'save_settings', 'can_manage', array(
				'server_url'    => array( 'type' => 'string', 'sanitize_callback' => 'esc_url_raw' ),
				'api_key'       => $text,
				'default_model' => $text,
				'default_size'  => $text,
				'use_webhooks'  => array( 'type' => 'boolean' ),
			) ),
			'/test-connection'   => array( 'POST', 'test_connection', 'can_manage', array() ),
			'/models'            => array( 'GET', 'models', 'can_upload', array() ),
			'/generate'          => array( 'POST', 'generate', 'can_upload', array(
				'prompt'          => $prompt,
				'negative_prompt' => array( 'type' => 'string', 'sanitize_callback' => 'sanitize_textarea_field' ),
				'model'           => $text,
				'size'            => $text,
				'count'           => array( 'type' => 'integer', 'default' => 1, 'minimum' => 1, 'maximum' => 4 ),
			) ),
			'/jobs/(?P<id>\d+)'  => array( 'GET', 'job', 'can_upload', array() ),
			'/jobs/(?P<id>\d+)/pick' => array( 'POST', 'pick', 'can_upload', array() ),
			'/enhance'           => array( 'POST', 'enhance', 'can_upload', array( 'prompt' => $prompt ) ),
			'/build'             => array( 'POST', 'build', 'can_upload', array(
				'subject'   => $text,
				'setting'   => $text,
				'mood'      => $text,
				'art_style' => $text,
				'lighting'  => $text,
				'camera'    => $text,
			) ),
			'/remove-background' => array( 'POST', 'remove_background', 'can_upload', array( 'attachment_id' => $attachment ) ),
			'/edit'              => array( 'POST', 'edit', 'can_upload', array(
				'attachment_id' => $attachment,
				'prompt'        => $prompt,
				'strength'      => array( 'type' => 'number', 'default' => 0.6, 'minimum' => 0.05, 'maximum' => 1 ),
			) ),
		);
		foreach ( $routes as $route => $spec ) {
			register_rest_route(
				self::NAMESPACE_V1,
				$route,
				array(
					'methods'             => $spec[0],
					'callback'            => array( __CLASS__, $spec[1] ),
					'permission_callback' => array( __CLASS__, $spec[2] ),
					'args'                => $spec[3],
				)
			);
		}
		// The server's webhook: public, and trusted only with a valid signature.
		register_rest_route(
			self::NAMESPACE_V1,
			'/webhook',
			array(
				'methods'             => 'POST',
				'callback'            => array( __CLASS__, 'webhook' ),
				'permission_callback' => '__return_true',
			)
		);
	}

	/**
	 * A prompt is 1–4000 characters.
	 *
	 * @param mixed $value The prompt.
	 * @return bool|WP_Error
	 */
	public static function validate_prompt( $value ) {
		$length = is_string( $value ) ? mb_strlen( trim( $value ) ) : 0;
		return $length >= 1 && $length <= 4000 ? true : new WP_Error( 'rest_invalid_param', __( 'Write a prompt of 1 to 4000 characters.', 'image-studio' ), array( 'status' => 400 ) );
	}

	/**
	 * The settings as the API shows them (the key masked).
	 *
	 * @return array
	 */
	public static function settings() {
		return array(
			'server_url'     => Image_Studio_Client::server_url(),
			'api_key'        => Image_Studio_Client::mask( Image_Studio_Client::api_key() ),
			'api_key_source' => Image_Studio_Client::key_source(),
			'default_model'  => (string) get_option( 'image_studio_default_model', '' ),
			'default_size'   => (string) get_option( 'image_studio_default_size', '512x512' ),
			'use_webhooks'   => '1' === (string) get_option( 'image_studio_use_webhooks', '1' ),
		);
	}

	/**
	 * POST /settings.
	 *
	 * @param WP_REST_Request $request Request.
	 * @return array|WP_Error
	 */
	public static function save_settings( $request ) {
		if ( $request->has_param( 'server_url' ) ) {
			$url = Image_Studio_Settings::sanitize_server_url( $request['server_url'] );
			if ( '' === $url && '' !== (string) $request['server_url'] ) {
				return new WP_Error( 'rest_invalid_param', __( 'The server URL must start with http:// or https://.', 'image-studio' ), array( 'status' => 400 ) );
			}
			update_option( 'image_studio_server_url', $url );
		}
		if ( $request->has_param( 'api_key' ) && '' !== (string) $request['api_key'] ) {
			update_option( 'image_studio_api_key', Image_Studio_Settings::sanitize_api_key( $request['api_key'] ), false );
		}
		if ( $request->has_param( 'default_model' ) ) {
			update_option( 'image_studio_default_model', Image_Studio_Settings::sanitize_model( $request['default_model'] ) );
		}
		if ( $request->has_param( 'default_size' ) ) {
			update_option( 'image_studio_default_size', Image_Studio_Settings::sanitize_size( $request['default_size'] ) );
		}
		if ( $request->has_param( 'use_webhooks' ) ) {
			update_option( 'image_studio_use_webhooks', $request['use_webhooks'] ? '1' : '0' );
		}
		return self::settings();
	}

	/**
	 * POST /test-connection: the server's health, its models and the key's usage.
	 *
	 * @return array|WP_Error
	 */
	public static function test_connection() {
		$health = Image_Studio_Client::request( 'GET', '/health' );
		if ( is_wp_error( $health ) ) {
			return $health;
		}
		$models = self::models();
		if ( is_wp_error( $models ) ) {
			return $models;
		}
		$usage = Image_Studio_Client::request( 'GET', '/usage' );
		if ( is_wp_error( $usage ) ) {
			return $usage;
		}
		return array(
			'health' => isset( $health['data'] ) ? $health['data'] : $health,
			'models' => $models['models'],
			'usage'  => isset( $usage['data'] ) ? $usage['data'] : array(),
		);
	}

	/**
	 * GET /models: the slugs that can run now, for the block's picker.
	 *
	 * @return array|WP_Error
	 */
	public static function models() {
		$answer = Image_Studio_Client::request( 'GET', '/models' );
		if ( is_wp_error( $answer ) ) {
			return $answer;
		}
		$models = array();
		$list   = isset( $answer['data']['models'] ) ? $answer['data']['models'] : ( isset( $answer['data'] ) ? $answer['data'] : array() );
		foreach ( (array) $list as $model ) {
			if ( is_array( $model ) && isset( $model['slug'] ) ) {
				$models[] = array(
					'slug'      => (string) $model['slug'],
					'name'      => isset( $model['name'] ) ? (string) $model['name'] : (string) $model['slug'],
					'available' => ! isset( $model['available'] ) || (bool) $model['available'],
				);
			}
		}
		return array( 'models' => $models );
	}

	/**
	 * Width and height from "WIDTHxHEIGHT" (the settings' default when empty).
	 *
	 * @param string $size Size.
	 * @return array|WP_Error
	 */
	private static function parse_size( $size ) {
		$size = '' === (string) $size ? (string) get_option( 'image_studio_default_size', '512x512' ) : (string) $size;
		if ( ! preg_match( '/^(\d{3,4})x(\d{3,4})$/', $size, $match ) ) {
			return new WP_Error( 'rest_invalid_param', __( 'The size must look like 512x512.', 'image-studio' ), array( 'status' => 400 ) );
		}
		return array( (int) $match[1], (int) $match[2] );
	}

	/**
	 * POST /generate: `count` images, each its own async job.
	 *
	 * @param WP_REST_Request $request Request.
	 * @return array|WP_Error
	 */
	public static function generate( $request ) {
		$size = self::parse_size( $request['size'] );
		if ( is_wp_error( $size ) ) {
			return $size;
		}
		$model   = '' !== (string) $request['model'] ? (string) $request['model'] : (string) get_option( 'image_studio_default_model', '' );
		$payload = array(
			'prompt' => (string) $request['prompt'],
			'width'  => $size[0],
			'height' => $size[1],
		);
		if ( '' !== $model ) {
			$payload['model'] = $model;
		}
		if ( '' !== (string) $request['negative_prompt'] ) {
			$payload['negative_prompt'] = (string) $request['negative_prompt'];
		}
		$batch = wp_generate_uuid4();
		$jobs  = array();
		for ( $i = 0; $i < (int) $request['count']; $i++ ) {
			$job = Image_Studio_Jobs::submit( '/generate', $payload, $payload['prompt'], $batch );
			if ( is_wp_error( $job ) ) {
				return $job; // The ones already submitted finish and are cleaned up if nobody picks them.
			}
			$jobs[] = $job;
		}
		return array( 'jobs' => $jobs );
	}

	/**
	 * GET /jobs/{id}: asks the server when still pending, so the editor sees progress without cron.
	 *
	 * @param WP_REST_Request $request Request.
	 * @return array|WP_Error
	 */
	public static function job( $request ) {
		$post = Image_Studio_Jobs::get( $request['id'] );
		if ( ! $post ) {
			return new WP_Error( 'rest_not_found', __( 'No such Image Studio job.', 'image-studio' ), array( 'status' => 404 ) );
		}
		Image_Studio_Jobs::refresh( $post );
		return Image_Studio_Jobs::to_array( get_post( $post->ID ) );
	}

	/**
	 * POST /jobs/{id}/pick.
	 *
	 * @param WP_REST_Request $request Request.
	 * @return array|WP_Error
	 */
	public static function pick( $request ) {
		$post = Image_Studio_Jobs::get( $request['id'] );
		if ( ! $post ) {
			return new WP_Error( 'rest_not_found', __( 'No such Image Studio job.', 'image-studio' ), array( 'status' => 404 ) );
		}
		return Image_Studio_Jobs::pick( $post );
	}

	/**
	 * POST /enhance: a richer prompt from the server's prompt tools.
	 *
	 * @param WP_REST_Request $request Request.
	 * @return array|WP_Error
	 */
	public static function enhance( $request ) {
		$answer = Image_Studio_Client::request( 'POST', '/prompt/enhance', array( 'prompt' => (string) $request['prompt'] ), 30 );
		if ( is_wp_error( $answer ) ) {
			return $answer;
		}
		$data = isset( $answer['data'] ) ? $answer['data'] : array();
		return array( 'prompt' => isset( $data['enhanced_prompt'] ) ? (string) $data['enhanced_prompt'] : ( isset( $data['prompt'] ) ? (string) $data['prompt'] : '' ) );
	}

	/**
	 * POST /build: a prompt from the builder's fields.
	 *
	 * @param WP_REST_Request $request Request.
	 * @return array|WP_Error
	 */
	public static function build( $request ) {
		$fields = array();
		foreach ( array( 'subject', 'setting', 'mood', 'art_style', 'lighting', 'camera' ) as $field ) {
			if ( '' !== (string) $request[ $field ] ) {
				$fields[ $field ] = (string) $request[ $field ];
			}
		}
		$answer = Image_Studio_Client::request( 'POST', '/prompt/build', $fields );
		if ( is_wp_error( $answer ) ) {
			return $answer;
		}
		return array( 'prompt' => isset( $answer['data']['prompt'] ) ? (string) $answer['data']['prompt'] : '' );
	}

	/**
	 * A media-library image as a data URL for the server, if the user may edit it.
	 *
	 * @param int $attachment_id Attachment.
	 * @return string|WP_Error
	 */
	private static function attachment_image( $attachment_id ) {
		if ( ! wp_attachment_is_image( $attachment_id ) || ! current_user_can( 'edit_post', $attachment_id ) ) {
			return new WP_Error( 'rest_forbidden', __( 'That image is not one you may edit.', 'image-studio' ), array( 'status' => 403 ) );
		}
		$file = get_attached_file( $attachment_id );
		$type = wp_check_filetype( (string) $file );
		if ( ! $file || ! is_readable( $file ) || ! in_array( $type['type'], array( 'image/png', 'image/jpeg', 'image/webp' ), true ) ) {
			return new WP_Error( 'rest_invalid_param', __( 'Only PNG, JPEG and WebP images can be edited.', 'image-studio' ), array( 'status' => 400 ) );
		}
		return 'data:' . $type['type'] . ';base64,' . base64_encode( (string) file_get_contents( $file ) ); // phpcs:ignore WordPress.WP.AlternativeFunctions.file_get_contents_file_get_contents, WordPress.PHP.DiscouragedPHPFunctions.obfuscation_base64_encode -- a local upload, sent as the API's data URL.
	}

	/**
	 * POST /remove-background: a cut-out of a media-library image, as a new attachment.
	 *
	 * @param WP_REST_Request $request Request.
	 * @return array|WP_Error
	 */
	public static function remove_background( $request ) {
		$image = self::attachment_image( (int) $request['attachment_id'] );
		if ( is_wp_error( $image ) ) {
			return $image;
		}
		$title = get_the_title( (int) $request['attachment_id'] ) . ' ' . __( '(background removed)', 'image-studio' );
		$job   = Image_Studio_Jobs::submit( '/image-studio', array( 'action' => 'remove_background', 'input_image' => $image ), $title, '' );
		return is_wp_error( $job ) ? $job : array( 'jobs' => array( $job ) );
	}

	/**
	 * POST /edit: a media-library image changed by a prompt, as a new attachment.
	 *
	 * @param WP_REST_Request $request Request.
	 * @return array|WP_Error
	 */
	public static function edit( $request ) {
		$image = self::attachment_image( (int) $request['attachment_id'] );
		if ( is_wp_error( $image ) ) {
			return $image;
		}
		$payload = array(
			'action'      => 'edit',
			'prompt'      => (string) $request['prompt'],
			'input_image' => $image,
			'strength'    => (float) $request['strength'],
		);
		$model   = (string) get_option( 'image_studio_default_model', '' );
		if ( '' !== $model ) {
			$payload['model'] = $model;
		}
		$job = Image_Studio_Jobs::submit( '/image-studio', $payload, (string) $request['prompt'], '' );
		return is_wp_error( $job ) ? $job : array( 'jobs' => array( $job ) );
	}

	/**
	 * POST /webhook: the server reports a job that ended. Anything not signed with the key's secret is a 401.
	 *
	 * @param WP_REST_Request $request Request.
	 * @return WP_REST_Response|WP_Error
	 */
	public static function webhook( $request ) {
		$body = $request->get_body();
		$ok   = Image_Studio_Jobs::verify(
			$body,
			(string) $request->get_header( 'webhook-id' ),
			(string) $request->get_header( 'webhook-timestamp' ),
			(string) $request->get_header( 'webhook-signature' )
		);
		if ( ! $ok ) {
			return new WP_Error( 'image_studio_bad_signature', __( 'Invalid or expired webhook signature.', 'image-studio' ), array( 'status' => 401 ) );
		}
		$event = json_decode( $body, true );
		if ( ! is_array( $event ) ) {
			return new WP_Error( 'image_studio_bad_webhook', __( 'The webhook body is not JSON.', 'image-studio' ), array( 'status' => 400 ) );
		}
		return new WP_REST_Response( array( 'received' => Image_Studio_Jobs::receive( $event ) ), 200 );
	}
}
