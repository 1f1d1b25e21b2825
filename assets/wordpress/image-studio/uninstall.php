<?php
/**
 * Removes the plugin's options and its job records; the images it saved stay in the media library.
 *
 * @package ImageStudio
 */

defined( 'WP_UNINSTALL_PLUGIN' ) || exit;

foreach ( array( 'image_studio_server_url', 'image_studio_api_key', 'image_studio_default_model', 'image_studio_default_size', 'image_studio_use_webhooks', 'image_studio_webhook_secret', 'image_studio_webhook_key_hash' ) as $image_studio_option ) {
	delete_option( $image_studio_option );
}
$image_studio_jobs = get_posts(
	array(
		'post_type'      => 'image_studio_job',
		'post_status'    => 'any',
		'numberposts'    => -1,
		'fields'         => 'ids',
	)
);
foreach ( $image_studio_jobs as $image_studio_job ) {
	wp_delete_post( $image_studio_job, true );
}
