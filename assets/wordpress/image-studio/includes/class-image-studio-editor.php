<?php
/**
 * Where authors use it: the block, the shortcode, and the media modal's "Remove background" and "Edit".
 * Posts only ever reference attachments, so page views never generate (nor pay for) anything.
 *
 * @package ImageStudio
 */

defined( 'ABSPATH' ) || exit;

/**
 * Block, shortcode, media modal.
 */
class Image_Studio_Editor {

	/**
	 * Hooks.
	 */
	public static function register() {
		add_action( 'init', array( __CLASS__, 'block' ) );
		add_shortcode( 'image_studio', array( __CLASS__, 'shortcode' ) );
		add_action( 'save_post', array( __CLASS__, 'generate_shortcode_images' ), 10, 2 );
		add_filter( 'attachment_fields_to_edit', array( __CLASS__, 'media_fields' ), 10, 2 );
		add_action( 'wp_enqueue_media', array( __CLASS__, 'media_script' ) );
	}

	/**
	 * The block: generated at edit time, rendered from its attachment.
	 */
	public static function block() {
		wp_register_script( 'image-studio-block', IMAGE_STUDIO_URL . 'js/block.js', array( 'wp-blocks', 'wp-element', 'wp-components', 'wp-block-editor', 'wp-api-fetch', 'wp-i18n' ), IMAGE_STUDIO_VERSION, true );
		wp_register_style( 'image-studio-editor', IMAGE_STUDIO_URL . 'css/editor.css', array(), IMAGE_STUDIO_VERSION );
		wp_localize_script(
			'image-studio-block',
			'imageStudioBlock',
			array(
				'defaultModel' => (string) get_option( 'image_studio_default_model', '' ),
				'defaultSize'  => (string) get_option( 'image_studio_default_size', '512x512' ),
			)
		);
		register_block_type(
			'image-studio/image',
			array(
				'api_version'     => 2,
				'title'           => __( 'Image Studio', 'image-studio' ),
				'category'        => 'media',
				'icon'            => 'format-image',
				'editor_script'   => 'image-studio-block',
				'editor_style'    => 'image-studio-editor',
				'attributes'      => array(
					'id'     => array( 'type' => 'number' ),
					'url'    => array( 'type' => 'string' ),
					'alt'    => array( 'type' => 'string' ),
					'prompt' => array( 'type' => 'string' ),
					'size'   => array(
						'type'    => 'string',
						'default' => 'large',
					),
				),
				'render_callback' => array( __CLASS__, 'render' ),
			)
		);
	}

	/**
	 * A saved image as a figure (the block's and the shortcode's output).
	 *
	 * @param array $attributes id, alt, size.
	 * @return string
	 */
	public static function render( $attributes ) {
		$id = isset( $attributes['id'] ) ? absint( $attributes['id'] ) : 0;
		if ( ! $id || ! wp_attachment_is_image( $id ) ) {
			return '';
		}
		$size = isset( $attributes['size'] ) ? sanitize_key( $attributes['size'] ) : 'large';
		$alt  = isset( $attributes['alt'] ) && '' !== $attributes['alt'] ? $attributes['alt'] : (string) get_post_meta( $id, '_wp_attachment_image_alt', true );
		return '<figure class="wp-block-image image-studio-image">' . wp_get_attachment_image( $id, $size, false, array( 'alt' => $alt ) ) . '</figure>';
	}

	/**
	 * [image_studio id="123"]: a saved image. [image_studio prompt="…"]: the image generated for that prompt when
	 * the post was saved (nothing until it is ready; never generated on a page view).
	 *
	 * @param array|string $atts Attributes.
	 * @return string
	 */
	public static function shortcode( $atts ) {
		$atts = shortcode_atts(
			array(
				'id'     => 0,
				'prompt' => '',
				'size'   => 'large',
				'alt'    => '',
			),
			$atts,
			'image_studio'
		);
		if ( ! $atts['id'] && '' !== $atts['prompt'] ) {
			$atts['id'] = (int) get_post_meta( (int) get_the_ID(), self::shortcode_key( $atts['prompt'] ), true );
		}
		return self::render( $atts );
	}

	/**
	 * The post meta that holds the attachment made for a shortcode's prompt.
	 *
	 * @param string $prompt Prompt.
	 * @return string
	 */
	private static function shortcode_key( $prompt ) {
		return '_image_studio_shortcode_' . md5( trim( (string) $prompt ) );
	}

	/**
	 * On save (edit time): one generation per [image_studio prompt="…"] that has no image yet.
	 *
	 * @param int     $post_id Post.
	 * @param WP_Post $post    Post.
	 */
	public static function generate_shortcode_images( $post_id, $post ) {
		if ( wp_is_post_revision( $post_id ) || wp_is_post_autosave( $post_id ) || Image_Studio_Jobs::POST_TYPE === $post->post_type || ! current_user_can( 'upload_files' ) || ! current_user_can( 'edit_post', $post_id ) ) {
			return;
		}
		if ( false === strpos( $post->post_content, '[image_studio' ) || ! preg_match_all( '/' . get_shortcode_regex( array( 'image_studio' ) ) . '/', $post->post_content, $matches, PREG_SET_ORDER ) ) {
			return;
		}
		foreach ( $matches as $match ) {
			$atts   = shortcode_parse_atts( $match[3] );
			$prompt = is_array( $atts ) && isset( $atts['prompt'] ) ? sanitize_textarea_field( $atts['prompt'] ) : '';
			$key    = self::shortcode_key( $prompt );
			if ( '' === $prompt || ! empty( $atts['id'] ) || get_post_meta( $post_id, $key, true ) ) {
				continue;
			}
			update_post_meta( $post_id, $key, 0 ); // Submitted once, even if the post is saved again meanwhile.
			$size    = explode( 'x', (string) get_option( 'image_studio_default_size', '512x512' ) );
			$payload = array(
				'prompt' => $prompt,
				'width'  => (int) $size[0],
				'height' => (int) $size[1],
			);
			$model   = (string) get_option( 'image_studio_default_model', '' );
			if ( '' !== $model ) {
				$payload['model'] = $model;
			}
			$job = Image_Studio_Jobs::submit( '/generate', $payload, $prompt, '' );
			if ( is_wp_error( $job ) ) {
				delete_post_meta( $post_id, $key );
				continue;
			}
			update_post_meta( $job['id'], '_image_studio_for_post', $post_id );
			update_post_meta( $job['id'], '_image_studio_for_key', $key );
		}
	}

	/**
	 * The media modal's Image Studio field: remove the background, or edit with a prompt.
	 *
	 * @param array   $fields Fields.
	 * @param WP_Post $post   Attachment.
	 * @return array
	 */
	public static function media_fields( $fields, $post ) {
		if ( ! wp_attachment_is_image( $post->ID ) || ! current_user_can( 'upload_files' ) || ! current_user_can( 'edit_post', $post->ID ) ) {
			return $fields;
		}
		$id                     = (int) $post->ID;
		$fields['image_studio'] = array(
			'label' => __( 'Image Studio', 'image-studio' ),
			'input' => 'html',
			'html'  => '<div class="image-studio-media" data-attachment="' . esc_attr( (string) $id ) . '">'
				. '<button type="button" class="button image-studio-remove-background">' . esc_html__( 'Remove background', 'image-studio' ) . '</button> '
				. '<input type="text" class="image-studio-edit-prompt" placeholder="' . esc_attr__( 'Change it: e.g. make it winter', 'image-studio' ) . '" /> '
				. '<button type="button" class="button image-studio-edit">' . esc_html__( 'Edit', 'image-studio' ) . '</button>'
				. '<p class="image-studio-status" aria-live="polite"></p></div>',
		);
		return $fields;
	}

	/**
	 * The media modal's script.
	 */
	public static function media_script() {
		if ( current_user_can( 'upload_files' ) ) {
			wp_enqueue_script( 'image-studio-media', IMAGE_STUDIO_URL . 'js/media.js', array( 'wp-api-fetch' ), IMAGE_STUDIO_VERSION, true );
		}
	}
}
