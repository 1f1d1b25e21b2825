<?php
/**
 * Generation jobs: submitted async to the server, finished by its signed webhook or, as a fallback, by polling
 * (WP-Cron, and the editor itself while it waits). A finished image is saved into the media library at once, so
 * neither an unstored result's expiry nor a hosted link's matters to posts.
 *
 * @package ImageStudio
 */

defined( 'ABSPATH' ) || exit;

/**
 * Local records of the server's jobs: posts of the `image_studio_job` type, with meta.
 */
class Image_Studio_Jobs {

	const POST_TYPE = 'image_studio_job';
	const CRON_HOOK = 'image_studio_poll';
	/** How old a webhook's timestamp may be (Standard Webhooks' default tolerance). */
	const WEBHOOK_TOLERANCE = 300;
	/** Results the author did not pick are deleted after this long. */
	const UNPICKED_TTL = DAY_IN_SECONDS;
	const PENDING = array( 'queued', 'running' );

	/**
	 * Hooks.
	 */
	public static function register() {
		add_action( 'init', array( __CLASS__, 'register_post_type' ) );
		add_filter( 'cron_schedules', array( __CLASS__, 'cron_schedules' ) ); // phpcs:ignore WordPress.WP.CronInterval.CronSchedulesInterval -- a job is waiting: once a minute.
		add_action( self::CRON_HOOK, array( __CLASS__, 'poll' ) );
	}

	/**
	 * The job records' post type: private, no UI.
	 */
	public static function register_post_type() {
		register_post_type(
			self::POST_TYPE,
			array(
				'public'       => false,
				'show_ui'      => false,
				'show_in_rest' => false,
				'supports'     => array( 'title', 'author' ),
				'label'        => __( 'Image Studio jobs', 'image-studio' ),
			)
		);
	}

	/**
	 * A once-a-minute schedule for polling.
	 *
	 * @param array $schedules Schedules.
	 * @return array
	 */
	public static function cron_schedules( $schedules ) {
		$schedules['image_studio_minute'] = array(
			'interval' => MINUTE_IN_SECONDS,
			'display'  => __( 'Every minute (Image Studio)', 'image-studio' ),
		);
		return $schedules;
	}

	/**
	 * On activation: the polling schedule.
	 */
	public static function activate() {
		if ( ! wp_next_scheduled( self::CRON_HOOK ) ) {
			wp_schedule_event( time() + MINUTE_IN_SECONDS, 'image_studio_minute', self::CRON_HOOK );
		}
		if ( false === get_option( 'image_studio_use_webhooks' ) ) {
			add_option( 'image_studio_use_webhooks', '1' );
		}
	}

	/**
	 * On deactivation: no more polling.
	 */
	public static function deactivate() {
		wp_clear_scheduled_hook( self::CRON_HOOK );
	}

	/**
	 * Submit work to the server in async mode and record it.
	 *
	 * @param string $endpoint '/generate' or '/image-studio'.
	 * @param array  $payload  The request body (without async and callback_url).
	 * @param string $title    What the job is (the prompt).
	 * @param string $batch    Jobs made together, among which the author picks ('' for edits: nothing to pick).
	 * @return array|WP_Error The job as the REST API shows it.
	 */
	public static function submit( $endpoint, $payload, $title, $batch ) {
		$payload['async'] = true;
		$callback         = self::callback_url();
		if ( '' !== $callback ) {
			$payload['callback_url'] = $callback;
		}
		$answer = Image_Studio_Client::request( 'POST', $endpoint, $payload );
		if ( is_wp_error( $answer ) ) {
			return $answer;
		}
		$job_id = isset( $answer['data']['job_id'] ) ? (string) $answer['data']['job_id'] : '';
		if ( '' === $job_id ) {
			return new WP_Error( 'image_studio_error', __( 'The Image Studio server did not answer with a job.', 'image-studio' ), array( 'status' => 502 ) );
		}
		$post_id = wp_insert_post(
			array(
				'post_type'   => self::POST_TYPE,
				'post_status' => 'publish',
				'post_title'  => wp_strip_all_tags( $title ),
				'post_author' => get_current_user_id(),
			),
			true
		);
		if ( is_wp_error( $post_id ) ) {
			return $post_id;
		}
		update_post_meta( $post_id, '_image_studio_job_id', $job_id );
		update_post_meta( $post_id, '_image_studio_status', 'queued' );
		update_post_meta( $post_id, '_image_studio_batch', $batch );
		update_post_meta( $post_id, '_image_studio_request_id', isset( $answer['request_id'] ) ? (string) $answer['request_id'] : '' );
		update_post_meta( $post_id, '_image_studio_params', wp_json_encode( $payload ) );
		return self::to_array( get_post( $post_id ) );
	}

	/**
	 * Where the server reports the job: this site's webhook route, if webhooks are on and the key has a secret.
	 *
	 * @return string
	 */
	private static function callback_url() {
		if ( '1' !== (string) get_option( 'image_studio_use_webhooks', '1' ) ) {
			return '';
		}
		$secret = self::webhook_secret();
		return is_wp_error( $secret ) || '' === $secret ? '' : rest_url( 'image-studio/v1/webhook' );
	}

	/**
	 * The key's webhook signing secret, made once per key (POST /webhooks answers it only then).
	 *
	 * @return string|WP_Error
	 */
	public static function webhook_secret() {
		$key_hash = hash( 'sha256', Image_Studio_Client::api_key() );
		$secret   = (string) get_option( 'image_studio_webhook_secret', '' );
		if ( '' !== $secret && get_option( 'image_studio_webhook_key_hash', '' ) === $key_hash ) {
			return $secret;
		}
		$answer = Image_Studio_Client::request( 'POST', '/webhooks', new stdClass() ); // `{}`: an empty array would encode as `[]`.
		if ( is_wp_error( $answer ) ) {
			return $answer;
		}
		$secret = isset( $answer['data']['secret'] ) ? (string) $answer['data']['secret'] : '';
		update_option( 'image_studio_webhook_secret', $secret, false );
		update_option( 'image_studio_webhook_key_hash', $key_hash, false );
		return $secret;
	}

	/**
	 * A job record of the current user (editors and admins: anyone's).
	 *
	 * @param int $id Local job id.
	 * @return WP_Post|null
	 */
	public static function get( $id ) {
		$post = get_post( (int) $id );
		if ( ! $post || self::POST_TYPE !== $post->post_type ) {
			return null;
		}
		if ( (int) $post->post_author !== get_current_user_id() && ! current_user_can( 'edit_others_posts' ) ) {
			return null;
		}
		return $post;
	}

	/**
	 * The job as the plugin's REST API shows it.
	 *
	 * @param WP_Post $post Job record.
	 * @return array
	 */
	public static function to_array( $post ) {
		$attachment = (int) get_post_meta( $post->ID, '_image_studio_attachment', true );
		$progress   = get_post_meta( $post->ID, '_image_studio_progress', true );
		return array(
			'id'            => $post->ID,
			'job_id'        => (string) get_post_meta( $post->ID, '_image_studio_job_id', true ),
			'status'        => (string) get_post_meta( $post->ID, '_image_studio_status', true ),
			'progress'      => '' === $progress ? null : (float) $progress,
			'attachment_id' => $attachment ? $attachment : null,
			'url'           => $attachment ? wp_get_attachment_url( $attachment ) : null,
			'error'         => (string) get_post_meta( $post->ID, '_image_studio_error', true ),
			'request_id'    => (string) get_post_meta( $post->ID, '_image_studio_request_id', true ),
		);
	}

	/**
	 * Ask the server how the job is doing; save the image when it is done.
	 *
	 * @param WP_Post $post Job record.
	 */
	public static function refresh( $post ) {
		if ( ! in_array( get_post_meta( $post->ID, '_image_studio_status', true ), self::PENDING, true ) ) {
			return;
		}
		$job_id = (string) get_post_meta( $post->ID, '_image_studio_job_id', true );
		$answer = Image_Studio_Client::request( 'GET', '/jobs/' . rawurlencode( $job_id ) . '?inline=false' );
		if ( is_wp_error( $answer ) ) {
			$data = $answer->get_error_data();
			if ( isset( $data['status'] ) && 404 === (int) $data['status'] ) {
				self::fail( $post, $answer->get_error_message(), isset( $data['request_id'] ) ? $data['request_id'] : '' );
			}
			return; // The server is unreachable for now: try again on the next poll.
		}
		$job = isset( $answer['data'] ) ? $answer['data'] : array();
		self::apply( $post, $job, isset( $answer['request_id'] ) ? (string) $answer['request_id'] : '' );
	}

	/**
	 * A job's state from the server (a poll's answer or a webhook's data).
	 *
	 * @param WP_Post $post       Job record.
	 * @param array   $job        The job: status, progress, result, error.
	 * @param string  $request_id The answer's request id.
	 */
	private static function apply( $post, $job, $request_id ) {
		$status = isset( $job['status'] ) ? (string) $job['status'] : '';
		if ( 'running' === $status ) {
			update_post_meta( $post->ID, '_image_studio_status', 'running' );
			if ( isset( $job['progress']['step'], $job['progress']['total'] ) && $job['progress']['total'] > 0 ) {
				update_post_meta( $post->ID, '_image_studio_progress', round( $job['progress']['step'] / $job['progress']['total'], 3 ) );
			}
		} elseif ( 'succeeded' === $status && isset( $job['result'] ) && is_array( $job['result'] ) ) {
			self::finish( $post, $job['result'] );
		} elseif ( in_array( $status, array( 'failed', 'cancelled' ), true ) ) {
			$message = isset( $job['error'] ) && $job['error'] ? (string) $job['error'] : $status;
			self::fail( $post, $message, $request_id, $status );
		}
	}

	/**
	 * Save the finished image into the media library: a normal attachment, alt text from the prompt, the
	 * generation parameters in its meta. The webhook and a poll may arrive together: one of them does it.
	 *
	 * @param WP_Post $post   Job record.
	 * @param array   $result The server's result.
	 * @return int|WP_Error The attachment id.
	 */
	public static function finish( $post, $result ) {
		if ( ! add_post_meta( $post->ID, '_image_studio_lock', time(), true ) ) {
			return new WP_Error( 'image_studio_busy', __( 'The image is being saved.', 'image-studio' ) );
		}
		$url = '';
		foreach ( array( 'download_url', 'image_url', 'image' ) as $field ) {
			if ( ! empty( $result[ $field ] ) ) {
				$url = (string) $result[ $field ];
				break;
			}
		}
		// Outside wp-admin (the webhook, the editor's polling, WP-Cron) these are not loaded: wp_tempnam(),
		// media_handle_sideload() and the image sizes live there.
		require_once ABSPATH . 'wp-admin/includes/file.php';
		require_once ABSPATH . 'wp-admin/includes/media.php';
		require_once ABSPATH . 'wp-admin/includes/image.php';
		$file = Image_Studio_Client::download( $url );
		if ( is_wp_error( $file ) ) {
			delete_post_meta( $post->ID, '_image_studio_lock' );
			update_post_meta( $post->ID, '_image_studio_error', $file->get_error_message() );
			return $file;
		}
		$prompt     = isset( $result['prompt'] ) && '' !== (string) $result['prompt'] ? (string) $result['prompt'] : $post->post_title;
		$attachment = media_handle_sideload(
			array(
				'name'     => sanitize_file_name( 'image-studio-' . sanitize_title( wp_trim_words( $prompt, 6, '' ) ) . '.png' ),
				'tmp_name' => $file,
			),
			0,
			wp_trim_words( $prompt, 12 ),
			array( 'post_author' => (int) $post->post_author )
		);
		if ( is_wp_error( $attachment ) ) {
			wp_delete_file( $file );
			delete_post_meta( $post->ID, '_image_studio_lock' );
			update_post_meta( $post->ID, '_image_studio_error', $attachment->get_error_message() );
			return $attachment;
		}
		update_post_meta( $attachment, '_wp_attachment_image_alt', sanitize_text_field( $prompt ) );
		$params = array_intersect_key( $result, array_flip( array( 'id', 'job_id', 'model', 'prompt', 'negative_prompt', 'width', 'height', 'seed', 'steps', 'num_inference_steps', 'guidance_scale', 'stored' ) ) );
		update_post_meta( $attachment, '_image_studio', wp_slash( wp_json_encode( $params ) ) );
		$batch = (string) get_post_meta( $post->ID, '_image_studio_batch', true );
		if ( '' !== $batch ) { // Generated to choose from: kept once picked, deleted a day later if not.
			update_post_meta( $attachment, '_image_studio_unpicked', $batch );
		}
		$for_post = (int) get_post_meta( $post->ID, '_image_studio_for_post', true );
		if ( $for_post ) { // A shortcode's image: the post shows it from now on.
			update_post_meta( $for_post, (string) get_post_meta( $post->ID, '_image_studio_for_key', true ), $attachment );
			wp_update_post( array( 'ID' => $attachment, 'post_parent' => $for_post ) );
		}
		update_post_meta( $post->ID, '_image_studio_attachment', $attachment );
		update_post_meta( $post->ID, '_image_studio_progress', 1 );
		update_post_meta( $post->ID, '_image_studio_status', 'succeeded' );
		delete_post_meta( $post->ID, '_image_studio_error' );
		return $attachment;
	}

	/**
	 * Record a failure.
	 *
	 * @param WP_Post $post       Job record.
	 * @param string  $message    The server's message.
	 * @param string  $request_id The server's request id.
	 * @param string  $status     'failed' or 'cancelled'.
	 */
	private static function fail( $post, $message, $request_id, $status = 'failed' ) {
		update_post_meta( $post->ID, '_image_studio_status', $status );
		update_post_meta( $post->ID, '_image_studio_error', sanitize_text_field( $message ) );
		if ( '' !== $request_id ) {
			update_post_meta( $post->ID, '_image_studio_request_id', sanitize_text_field( $request_id ) );
		}
	}

	/**
	 * The author picked this job's image: it stays, the others of its batch that nobody picked go.
	 *
	 * @param WP_Post $post Job record.
	 * @return array|WP_Error
	 */
	public static function pick( $post ) {
		$attachment = (int) get_post_meta( $post->ID, '_image_studio_attachment', true );
		if ( ! $attachment ) {
			return new WP_Error( 'image_studio_not_ready', __( 'This job has no image yet.', 'image-studio' ), array( 'status' => 409 ) );
		}
		$batch = (string) get_post_meta( $post->ID, '_image_studio_batch', true );
		delete_post_meta( $attachment, '_image_studio_unpicked' );
		$others = get_posts(
			array(
				'post_type'   => 'attachment',
				'post_status' => 'inherit',
				'numberposts' => 20,
				'fields'      => 'ids',
				'meta_key'    => '_image_studio_unpicked', // phpcs:ignore WordPress.DB.SlowDBQuery.slow_db_query_meta_key -- a handful of rows.
				'meta_value'  => $batch, // phpcs:ignore WordPress.DB.SlowDBQuery.slow_db_query_meta_value -- a handful of rows.
			)
		);
		foreach ( $others as $other ) {
			if ( '' !== $batch && current_user_can( 'delete_post', $other ) ) {
				wp_delete_attachment( $other, true );
			}
		}
		return array(
			'attachment_id' => $attachment,
			'url'           => wp_get_attachment_url( $attachment ),
			'alt'           => (string) get_post_meta( $attachment, '_wp_attachment_image_alt', true ),
		);
	}

	/**
	 * Whether a webhook is the server's: a Standard Webhooks signature with the key's secret, recent.
	 *
	 * @param string $body      Raw body.
	 * @param string $id        webhook-id header.
	 * @param string $timestamp webhook-timestamp header.
	 * @param string $signature webhook-signature header.
	 * @return bool
	 */
	public static function verify( $body, $id, $timestamp, $signature ) {
		$secret = (string) get_option( 'image_studio_webhook_secret', '' );
		if ( '' === $secret || '' === $id || ! ctype_digit( $timestamp ) || abs( time() - (int) $timestamp ) > self::WEBHOOK_TOLERANCE ) {
			return false;
		}
		$key = base64_decode( preg_replace( '/^whsec_/', '', $secret ), true ); // phpcs:ignore WordPress.PHP.DiscouragedPHPFunctions.obfuscation_base64_decode -- the secret's bytes.
		if ( false === $key ) {
			return false;
		}
		$expected = base64_encode( hash_hmac( 'sha256', $id . '.' . $timestamp . '.' . $body, $key, true ) ); // phpcs:ignore WordPress.PHP.DiscouragedPHPFunctions.obfuscation_base64_encode -- the signature's encoding.
		foreach ( explode( ' ', $signature ) as $candidate ) {
			$parts = explode( ',', $candidate, 2 );
			if ( 2 === count( $parts ) && 'v1' === $parts[0] && hash_equals( $expected, $parts[1] ) ) {
				return true;
			}
		}
		return false;
	}

	/**
	 * A verified webhook: the job it names, finished.
	 *
	 * @param array $event The decoded body: type, data.
	 * @return bool Whether the job is one of this site's.
	 */
	public static function receive( $event ) {
		$data   = isset( $event['data'] ) && is_array( $event['data'] ) ? $event['data'] : array();
		$job_id = isset( $data['job_id'] ) ? (string) $data['job_id'] : '';
		$post   = '' === $job_id ? null : self::find( $job_id );
		if ( ! $post ) {
			return false;
		}
		self::apply( $post, $data, '' );
		return true;
	}

	/**
	 * The record of a server job id.
	 *
	 * @param string $job_id Server job id.
	 * @return WP_Post|null
	 */
	private static function find( $job_id ) {
		$posts = get_posts(
			array(
				'post_type'   => self::POST_TYPE,
				'numberposts' => 1,
				'meta_key'    => '_image_studio_job_id', // phpcs:ignore WordPress.DB.SlowDBQuery.slow_db_query_meta_key -- one row.
				'meta_value'  => $job_id, // phpcs:ignore WordPress.DB.SlowDBQuery.slow_db_query_meta_value -- one row.
			)
		);
		return $posts ? $posts[0] : null;
	}

	/**
	 * WP-Cron: every job still pending is asked about (webhooks may not reach a site behind a firewall), and
	 * results nobody picked for a day are deleted.
	 */
	public static function poll() {
		$pending = get_posts(
			array(
				'post_type'   => self::POST_TYPE,
				'numberposts' => 25,
				'orderby'     => 'date',
				'order'       => 'ASC',
				'meta_query'  => array( // phpcs:ignore WordPress.DB.SlowDBQuery.slow_db_query_meta_query -- few pending jobs.
					array(
						'key'     => '_image_studio_status',
						'value'   => self::PENDING,
						'compare' => 'IN',
					),
				),
			)
		);
		foreach ( $pending as $post ) {
			self::refresh( $post );
		}
		$unpicked = get_posts(
			array(
				'post_type'   => 'attachment',
				'post_status' => 'inherit',
				'numberposts' => 25,
				'fields'      => 'ids',
				'date_query'  => array( array( 'before' => gmdate( 'Y-m-d H:i:s', time() - self::UNPICKED_TTL ), 'column' => 'post_date_gmt' ) ),
				'meta_query'  => array( // phpcs:ignore WordPress.DB.SlowDBQuery.slow_db_query_meta_query -- few rows.
					array(
						'key'     => '_image_studio_unpicked',
						'compare' => 'EXISTS',
					),
				),
			)
		);
		foreach ( $unpicked as $attachment ) {
			wp_delete_attachment( $attachment, true );
		}
	}
}
