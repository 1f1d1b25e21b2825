/* Settings → Image Studio: "Test connection" through the plugin's REST route (the key stays on the server). */
( function () {
	const button = document.getElementById( 'image-studio-test' );
	const out = document.getElementById( 'image-studio-test-result' );
	if ( ! button || ! out ) {
		return;
	}
	function show( text, ok ) {
		out.textContent = '';
		const box = document.createElement( 'div' );
		box.className = 'notice inline ' + ( ok ? 'notice-success' : 'notice-error' );
		const p = document.createElement( 'p' );
		p.textContent = text; // textContent: nothing the server says is ever HTML here
		box.appendChild( p );
		out.appendChild( box );
	}
	button.addEventListener( 'click', function () {
		button.disabled = true;
		show( 'Testing…', true );
		wp.apiFetch( { path: '/image-studio/v1/test-connection', method: 'POST' } )
			.then( function ( result ) {
				const health = result.health || {};
				const models = ( result.models || [] ).filter( function ( m ) { return m.available; } ).map( function ( m ) { return m.slug; } );
				const usage = result.usage || {};
				const plan = usage.plan ? ( usage.plan.name || usage.plan.slug || '' ) : '';
				const credits = usage.credits ? usage.credits.balance : undefined;
				show( 'Connected: server ' + ( health.status || 'ok' ) + ( health.device ? ' on ' + health.device : '' ) +
					'. Models ready: ' + ( models.join( ', ' ) || 'none' ) + '.' +
					( plan ? ' Plan: ' + plan + '.' : '' ) + ( credits !== undefined ? ' Credits: ' + credits + '.' : '' ), true );
			} )
			.catch( function ( error ) {
				const id = error && error.data && error.data.request_id ? ' (request_id ' + error.data.request_id + ')' : '';
				show( ( error && error.message ? error.message : 'The test failed.' ) + id, false );
			} )
			.finally( function () {
				button.disabled = false;
			} );
	} );
}() );
