/* The Image Studio block: write a prompt (or build one, or enhance it), generate at edit time, pick a result.
   The post keeps only the chosen attachment; the page renders it without generating anything.
   Plain ES5 + wp.element: no build step. */
( function ( wp ) {
	const el = wp.element.createElement;
	const useState = wp.element.useState;
	const useEffect = wp.element.useEffect;
	const components = wp.components;
	const blockEditor = wp.blockEditor;
	const __ = wp.i18n.__;
	const settings = window.imageStudioBlock || {};
	const SIZES = [ '512x512', '768x768', '1024x1024', '1024x768', '768x1024', '256x256' ];

	function errorText( error ) {
		const id = error && error.data && error.data.request_id ? ' (request_id ' + error.data.request_id + ')' : '';
		return ( error && error.message ? error.message : __( 'Image Studio failed.', 'image-studio' ) ) + id;
	}

	function Edit( props ) {
		const attributes = props.attributes;
		const setAttributes = props.setAttributes;
		const [ prompt, setPrompt ] = useState( attributes.prompt || '' );
		const [ model, setModel ] = useState( settings.defaultModel || '' );
		const [ size, setSize ] = useState( settings.defaultSize || '512x512' );
		const [ count, setCount ] = useState( 2 );
		const [ models, setModels ] = useState( [] );
		const [ jobs, setJobs ] = useState( [] );
		const [ busy, setBusy ] = useState( false );
		const [ error, setError ] = useState( '' );
		const [ builder, setBuilder ] = useState( { subject: '', setting: '', mood: '', art_style: '' } );
		const blockProps = blockEditor.useBlockProps( { className: 'image-studio-block' } );

		useEffect( function () {
			wp.apiFetch( { path: '/image-studio/v1/models' } ).then( function ( result ) {
				setModels( result.models.filter( function ( m ) { return m.available; } ) );
			} ).catch( function ( e ) { setError( errorText( e ) ); } );
		}, [] );

		// Follow pending jobs: the plugin asks the server, so progress shows even without webhooks or cron.
		useEffect( function () {
			const pending = jobs.filter( function ( job ) { return job.status === 'queued' || job.status === 'running'; } );
			if ( ! pending.length ) {
				return undefined;
			}
			const timer = setTimeout( function () {
				Promise.all( pending.map( function ( job ) { return wp.apiFetch( { path: '/image-studio/v1/jobs/' + job.id } ); } ) )
					.then( function ( states ) {
						const byId = {};
						states.forEach( function ( s ) { byId[ s.id ] = s; } );
						setJobs( jobs.map( function ( job ) { return byId[ job.id ] || job; } ) );
					} ).catch( function ( e ) { setError( errorText( e ) ); } );
			}, 1500 );
			return function () { clearTimeout( timer ); };
		}, [ jobs ] );

		function run( request, then ) {
			setBusy( true );
			setError( '' );
			return wp.apiFetch( request ).then( then ).catch( function ( e ) { setError( errorText( e ) ); } )
				.finally( function () { setBusy( false ); } );
		}

		function generate() {
			setJobs( [] );
			run( { path: '/image-studio/v1/generate', method: 'POST', data: { prompt: prompt, model: model, size: size, count: count } },
				function ( result ) { setJobs( result.jobs ); } );
		}

		function pick( job ) {
			run( { path: '/image-studio/v1/jobs/' + job.id + '/pick', method: 'POST' }, function ( chosen ) {
				setAttributes( { id: chosen.attachment_id, url: chosen.url, alt: chosen.alt, prompt: prompt } );
				setJobs( [] );
			} );
		}

		if ( attributes.id && attributes.url ) {
			return el( 'figure', blockProps,
				el( 'img', { src: attributes.url, alt: attributes.alt || '' } ),
				el( blockEditor.BlockControls, null,
					el( components.ToolbarGroup, null,
						el( components.ToolbarButton, { icon: 'update', label: __( 'Generate again', 'image-studio' ),
							onClick: function () { setAttributes( { id: undefined, url: undefined } ); } } ) ) ) );
		}

		const done = jobs.filter( function ( job ) { return job.status === 'succeeded'; } );
		const failed = jobs.filter( function ( job ) { return job.status === 'failed' || job.status === 'cancelled'; } );
		const progress = jobs.length ? jobs.reduce( function ( sum, job ) {
			return sum + ( job.status === 'succeeded' ? 1 : ( job.progress || 0 ) );
		}, 0 ) / jobs.length : 0;
		const waiting = jobs.length && done.length + failed.length < jobs.length;

		return el( 'div', blockProps,
			el( components.TextareaControl, { label: __( 'Prompt', 'image-studio' ), value: prompt, onChange: setPrompt, rows: 3,
				help: __( 'Generated now, saved into the media library; the page shows the image you pick.', 'image-studio' ) } ),
			el( components.PanelBody, { title: __( 'Prompt builder', 'image-studio' ), initialOpen: false },
				[ [ 'subject', __( 'Subject', 'image-studio' ) ], [ 'setting', __( 'Setting', 'image-studio' ) ],
					[ 'mood', __( 'Mood', 'image-studio' ) ], [ 'art_style', __( 'Art style', 'image-studio' ) ] ].map( function ( field ) {
					return el( components.TextControl, { key: field[ 0 ], label: field[ 1 ], value: builder[ field[ 0 ] ],
						onChange: function ( value ) { const next = Object.assign( {}, builder ); next[ field[ 0 ] ] = value; setBuilder( next ); } } );
				} ),
				el( components.Button, { variant: 'secondary', disabled: busy || ! builder.subject,
					onClick: function () { run( { path: '/image-studio/v1/build', method: 'POST', data: builder }, function ( r ) { setPrompt( r.prompt ); } ); } },
					__( 'Build prompt', 'image-studio' ) ) ),
			el( 'div', { className: 'image-studio-row' },
				el( components.SelectControl, { label: __( 'Model', 'image-studio' ), value: model, onChange: setModel,
					options: [ { value: '', label: __( "Server's default", 'image-studio' ) } ].concat( models.map( function ( m ) { return { value: m.slug, label: m.name }; } ) ) } ),
				el( components.SelectControl, { label: __( 'Size', 'image-studio' ), value: size, onChange: setSize,
					options: SIZES.map( function ( s ) { return { value: s, label: s }; } ) } ),
				el( components.SelectControl, { label: __( 'Images', 'image-studio' ), value: String( count ), onChange: function ( v ) { setCount( parseInt( v, 10 ) ); },
					options: [ 1, 2, 3, 4 ].map( function ( n ) { return { value: String( n ), label: String( n ) }; } ) } ),
				el( components.Button, { variant: 'secondary', disabled: busy || ! prompt,
					onClick: function () { run( { path: '/image-studio/v1/enhance', method: 'POST', data: { prompt: prompt } }, function ( r ) { setPrompt( r.prompt ); } ); } },
					__( 'Enhance', 'image-studio' ) ),
				el( components.Button, { variant: 'primary', disabled: busy || waiting || ! prompt, onClick: generate }, __( 'Generate', 'image-studio' ) ) ),
			waiting ? el( 'div', null, el( 'progress', { max: 1, value: progress, style: { width: '100%' } } ),
				el( 'p', null, __( 'Generating…', 'image-studio' ) + ' ' + Math.round( progress * 100 ) + ' %' ) ) : null,
			error ? el( components.Notice, { status: 'error', isDismissible: false }, error ) : null,
			failed.map( function ( job ) {
				return el( components.Notice, { key: 'f' + job.id, status: 'error', isDismissible: false },
					job.error + ( job.request_id ? ' (request_id ' + job.request_id + ')' : '' ) );
			} ),
			done.length ? el( 'div', { className: 'image-studio-results' }, done.map( function ( job ) {
				return el( 'button', { key: job.id, type: 'button', className: 'image-studio-result', onClick: function () { pick( job ); },
					title: __( 'Use this image', 'image-studio' ) }, el( 'img', { src: job.url, alt: prompt } ) );
			} ) ) : null );
	}

	wp.blocks.registerBlockType( 'image-studio/image', {
		apiVersion: 2,
		title: __( 'Image Studio', 'image-studio' ),
		description: __( 'Generate an image with your Image Studio server.', 'image-studio' ),
		category: 'media',
		icon: 'format-image',
		attributes: {
			id: { type: 'number' },
			url: { type: 'string' },
			alt: { type: 'string' },
			prompt: { type: 'string' },
			size: { type: 'string', default: 'large' },
		},
		edit: Edit,
		save: function () { return null; }, // rendered by PHP from the attachment
	} );
}( window.wp ) );
