<?php
/**
 * Plugin Name:       Image Studio
 * Plugin URI:        https://github.com/image-studio/image-studio
 * Description:       Generate, edit and cut out images with your own Image Studio server, right in the block editor and the media library. Images are saved as normal attachments: nothing is generated on page views.
 * Version:           1.0.0
 * Requires at least: 6.1
 * Requires PHP:      7.4
 * Author:            Image Studio
 * License:           GPL-2.0-or-later
 * License URI:       https://www.gnu.org/licenses/gpl-2.0.html
 * Text Domain:       image-studio
 *
 * @package ImageStudio
 */

defined( 'ABSPATH' ) || exit;

define( 'IMAGE_STUDIO_VERSION', '1.0.0' );
define( 'IMAGE_STUDIO_FILE', __FILE__ );
define( 'IMAGE_STUDIO_DIR', plugin_dir_path( __FILE__ ) );
define( 'IMAGE_STUDIO_URL', plugin_dir_url( __FILE__ ) );

require_once IMAGE_STUDIO_DIR . 'includes/class-image-studio-client.php';
require_once IMAGE_STUDIO_DIR . 'includes/class-image-studio-jobs.php';
require_once IMAGE_STUDIO_DIR . 'includes/class-image-studio-rest.php';
require_once IMAGE_STUDIO_DIR . 'includes/class-image-studio-settings.php';
require_once IMAGE_STUDIO_DIR . 'includes/class-image-studio-editor.php';

Image_Studio_Jobs::register();
Image_Studio_Rest::register();
Image_Studio_Settings::register();
Image_Studio_Editor::register();

register_activation_hook( __FILE__, array( 'Image_Studio_Jobs', 'activate' ) );
register_deactivation_hook( __FILE__, array( 'Image_Studio_Jobs', 'deactivate' ) );
