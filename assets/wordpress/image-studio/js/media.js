/* The media modal's Image Studio field: remove the background or edit with a prompt; the result is a new
   attachment (the original stays). Event delegation: the modal redraws its fields. */
( function () {
	function setStatus( box, text ) {
		const status = box.querySelector( '.image-studio-status' );
		if ( status ) {
			status.textContent = text;
		}
	}
	function failure( error ) {
		const id = error && error.data && error.data.request_id ? ' (request_id ' + error.data.request_id + ')' : '';
		return ( error && error.message ? error.message : 'Image Studio failed.' ) + id;
	}
	function follow( box, job ) {
		wp.apiFetch( { path: '/image-studio/v1/jobs/' + job.id } ).then( function ( state ) {
			if ( state.status === 'succeeded' ) {
				setStatus( box, 'Done: a new image is in the media library.' );
				if ( wp.media && wp.media.frame && wp.media.frame.content.get() && wp.media.frame.content.get().collection ) {
					wp.media.frame.content.get().collection.props.set( { ignore: Date.now() } );
				}
			} else if ( state.status === 'failed' || state.status === 'cancelled' ) {
				setStatus( box, state.error + ( state.request_id ? ' (request_id ' + state.request_id + ')' : '' ) );
			} else {
				setStatus( box, 'Working… ' + ( state.progress ? Math.round( state.progress * 100 ) + ' %' : '' ) );
				setTimeout( function () { follow( box, job ); }, 2000 );
			}
		} ).catch( function ( error ) { setStatus( box, failure( error ) ); } );
	}
	document.addEventListener( 'click', function ( event ) {
		const button = event.target.closest( '.image-studio-remove-background, .image-studio-edit' );
		if ( ! button ) {
			return;
		}
		const box = button.closest( '.image-studio-media' );
		const attachment = parseInt( box.getAttribute( 'data-attachment' ), 10 );
		let request;
		if ( button.classList.contains( 'image-studio-edit' ) ) {
			const prompt = box.querySelector( '.image-studio-edit-prompt' ).value.trim();
			if ( ! prompt ) {
				setStatus( box, 'Write what to change first.' );
				return;
			}
			request = { path: '/image-studio/v1/edit', method: 'POST', data: { attachment_id: attachment, prompt: prompt } };
		} else {
			request = { path: '/image-studio/v1/remove-background', method: 'POST', data: { attachment_id: attachment } };
		}
		setStatus( box, 'Sending…' );
		wp.apiFetch( request ).then( function ( result ) { follow( box, result.jobs[ 0 ] ); } )
			.catch( function ( error ) { setStatus( box, failure( error ) ); } );
	} );
}() );
