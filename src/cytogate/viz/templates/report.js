window.addEventListener('error', function (e) {
  if (!(e.target && e.target.tagName === 'IMG')) {
    document.documentElement.setAttribute('data-script-error', String(e.message || e));
  }
}, true);
window.addEventListener('load', function () {
  var images = document.images, loaded = 0, missing = [];
  for (var i = 0; i < images.length; i++) {
    if (images[i].complete && images[i].naturalWidth > 0) { loaded++; }
    else { missing.push(images[i].getAttribute('src')); images[i].classList.add('broken'); }
  }
  var status = document.getElementById('image-status');
  status.setAttribute('data-images', String(images.length));
  status.setAttribute('data-loaded', String(loaded));
  status.setAttribute('data-missing', String(missing.length));
  if (missing.length) {
    status.textContent = missing.length + ' of ' + images.length + ' images could not be '
      + 'loaded (first: ' + missing[0] + '). Keep the plots/ folder next to report.html.';
  }
});
