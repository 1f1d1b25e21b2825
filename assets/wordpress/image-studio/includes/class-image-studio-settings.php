<?php
/**
 * Settings → Image Studio: server URL, API key (or the IMAGESTUDIO_API_KEY constant), defaults, and a
 * "Test connection" button.
 *
 * @package ImageStudio
 */

defined( 'ABSPATH' ) || exit;

/**
 * The settings page, through the Settings API (its nonce and capability checks included).
 */
class Image_Studio_Settings {

	const PAGE = 'image-studio';

	/**
	 * Hooks.
	 */
	public static function register() {
		add_action( 'admin_menu', array( __CLASS__, 'menu' ) );
		add_action( 'admin_init', array( __CLASS__, 'settings' ) );
		add_action( 'admin_enqueue_scripts', array( __CLASS__, 'scripts' ) );
	}

	/**
	 * The menu entry.
	 */
	public static function menu() {
		add_options_page( __( 'Image Studio', 'image-studio' ), __( 'Image Studio', 'image-studio' ), 'manage_options', self::PAGE, array( __CLASS__, 'render' ) );
	}

	/**
	 * A server URL: http(s) only, no trailing slash.
	 *
	 * @param mixed $value Input.
	 * @return string
	 */
	public static function sanitize_server_url( $value ) {
		$url = esc_url_raw( trim( (string) $value ), array( 'http', 'https' ) );
		return untrailingslashit( $url );
	}

	/**
	 * An API key: printable, no spaces. An empty submission keeps the stored key (the field is never prefilled).
	 *
	 * @param mixed $value Input.
	 * @return string
	 */
	public static function sanitize_api_key( $value ) {
		$key = preg_replace( '/[^A-Za-z0-9_\-]/', '', (string) $value );
		return '' === $key ? (string) get_option( 'image_studio_api_key', '' ) : $key;
	}

	/**
	 * A model slug.
	 *
	 * @param mixed $value Input.
	 * @return string
	 */
	public static function sanitize_model( $value ) {
		return substr( preg_replace( '/[^A-Za-z0-9._\-]/', '', (string) $value ), 0, 64 );
	}

	/**
	 * A size like 512x512, within the server's limits.
	 *
	 * @param mixed $value Input.
	 * @return string
	 */
	public static function sanitize_size( $value ) {
		return preg_match( '/^(256|384|512|640|768|896|1024)x(256|384|512|640|768|896|1024)$/', (string) $value ) ? (string) $value : '512x512';
	}

	/**
	 * The options.
	 */
	public static function settings() {
		register_setting( self::PAGE, 'image_studio_server_url', array( 'sanitize_callback' => array( __CLASS__, 'sanitize_server_url' ) ) );
		register_setting( self::PAGE, 'image_studio_api_key', array( 'sanitize_callback' => array( __CLASS__, 'sanitize_api_key' ) ) );
		register_setting( self::PAGE, 'image_studio_default_model', array( 'sanitize_callback' => array( __CLASS__, 'sanitize_model' ) ) );
		register_setting( self::PAGE, 'image_studio_default_size', array( 'sanitize_callback' => array( __CLASS__, 'sanitize_size' ) ) );
		register_setting(
			self::PAGE,
			'image_studio_use_webhooks',
			array(
				'sanitize_callback' => function ( $value ) {
					return $value ? '1' : '0';
				},
			)
		);
	}

	/**
	 * The page's script (Test connection).
	 *
	 * @param string $hook The admin page.
	 */
	public static function scripts( $hook ) {
		if ( 'settings_page_' . self::PAGE !== $hook ) {
			return;
		}
		wp_enqueue_script( 'image-studio-settings', IMAGE_STUDIO_URL . 'js/settings.js', array( 'wp-api-fetch' ), IMAGE_STUDIO_VERSION, true );
	}

	/**
	 * The page.
	 */
	public static function render() {
		if ( ! current_user_can( 'manage_options' ) ) {
			return;
		}
		$source = Image_Studio_Client::key_source();
		?>
		<div class="wrap">
			<h1><?php echo esc_html__( 'Image Studio', 'image-studio' ); ?></h1>
			<p><?php echo esc_html__( 'Connect this site to your Image Studio server. Authors generate in the block editor; images are saved into the media library.', 'image-studio' ); ?></p>
			<form method="post" action="options.php">
				<?php settings_fields( self::PAGE ); ?>
				<table class="form-table" role="presentation">
					<tr>
						<th scope="row"><label for="image_studio_server_url"><?php echo esc_html__( 'Server URL', 'image-studio' ); ?></label></th>
						<td>
							<input type="url" class="regular-text code" id="image_studio_server_url" name="image_studio_server_url" value="<?php echo esc_attr( Image_Studio_Client::server_url() ); ?>" placeholder="http://192.168.1.20:8000" />
							<p class="description"><?php echo esc_html__( 'Any port and any address (also on your LAN): the plugin talks to this server and downloads only from it.', 'image-studio' ); ?></p>
						</td>
					</tr>
					<tr>
						<th scope="row"><label for="image_studio_api_key"><?php echo esc_html__( 'API key', 'image-studio' ); ?></label></th>
						<td>
							<?php if ( 'constant' === $source ) : ?>
								<p><strong><?php echo esc_html__( 'Set in wp-config.php (IMAGESTUDIO_API_KEY).', 'image-studio' ); ?></strong> <code><?php echo esc_html( Image_Studio_Client::mask( Image_Studio_Client::api_key() ) ); ?></code></p>
							<?php else : ?>
								<input type="password" class="regular-text code" id="image_studio_api_key" name="image_studio_api_key" value="" autocomplete="off" placeholder="<?php echo esc_attr( 'option' === $source ? Image_Studio_Client::mask( Image_Studio_Client::api_key() ) : 'sk_live_…' ); ?>" />
								<p class="description"><?php echo esc_html__( "Preferred: define( 'IMAGESTUDIO_API_KEY', 'sk_live_…' ); in wp-config.php, which keeps the key out of the database. Use a key of its own for this site: the plugin gives it a webhook secret.", 'image-studio' ); ?></p>
							<?php endif; ?>
						</td>
					</tr>
					<tr>
						<th scope="row"><label for="image_studio_default_model"><?php echo esc_html__( 'Default model', 'image-studio' ); ?></label></th>
						<td><input type="text" class="regular-text code" id="image_studio_default_model" name="image_studio_default_model" value="<?php echo esc_attr( (string) get_option( 'image_studio_default_model', '' ) ); ?>" placeholder="<?php echo esc_attr__( "the server's default", 'image-studio' ); ?>" /></td>
					</tr>
					<tr>
						<th scope="row"><label for="image_studio_default_size"><?php echo esc_html__( 'Default size', 'image-studio' ); ?></label></th>
						<td>
							<select id="image_studio_default_size" name="image_studio_default_size">
								<?php foreach ( array( '512x512', '768x768', '1024x1024', '1024x768', '768x1024', '256x256' ) as $size ) : ?>
									<option value="<?php echo esc_attr( $size ); ?>" <?php selected( get_option( 'image_studio_default_size', '512x512' ), $size ); ?>><?php echo esc_html( $size ); ?></option>
								<?php endforeach; ?>
							</select>
						</td>
					</tr>
					<tr>
						<th scope="row"><?php echo esc_html__( 'Webhooks', 'image-studio' ); ?></th>
						<td>
							<label><input type="checkbox" name="image_studio_use_webhooks" value="1" <?php checked( '1', (string) get_option( 'image_studio_use_webhooks', '1' ) ); ?> /> <?php echo esc_html__( 'Let the server report finished images to this site (signed). Without it, or when the server cannot reach this site, the plugin asks the server itself.', 'image-studio' ); ?></label>
						</td>
					</tr>
				</table>
				<?php submit_button(); ?>
			</form>
			<h2><?php echo esc_html__( 'Connection', 'image-studio' ); ?></h2>
			<p><button type="button" class="button" id="image-studio-test"><?php echo esc_html__( 'Test connection', 'image-studio' ); ?></button></p>
			<div id="image-studio-test-result" aria-live="polite"></div>
		</div>
		<?php
	}
}
